"""Read the first scan of a serial run while torch loads.

Why: a single-scan ``napari-bavis analyze`` is mostly one core's worth of work in a row: import
torch and load the model (~1.5-2 s, holding the interpreter), then read and resample the scan
(~1 s, mostly in zlib and SimpleITK, which let go of it). Reading the scan in a thread beside the
torch import takes 0.7-1 s off each real scan on two cores. (Importing matplotlib there too, beside
the preprocessing, was measured slower: 0.7 s on average over 5 real scans, the two fighting over
the interpreter.) A scan that fails to read fails in its job, with its own one line, exactly as
without the prefetch.
"""

from __future__ import annotations

import threading


class ScanPrefetch:
    """``load_scan(path)`` started now in a daemon thread; ``load(path)`` hands it over once."""

    def __init__(self, path) -> None:
        self.path = str(path)
        self._result = None
        self._error: BaseException | None = None
        self._read = threading.Event()
        threading.Thread(target=self._work, name="napari-bavis-prefetch", daemon=True).start()

    def _work(self) -> None:
        from ..io import load_scan

        try:
            self._result = load_scan(self.path)
        except BaseException as err:  # re-raised in the job that asks for it
            self._error = err
        finally:
            self._read.set()

    def load(self, path):
        """The scan at ``path``: the prefetched one (once), else read now."""
        from ..io import load_scan

        if str(path) != self.path:
            return load_scan(path)
        self._read.wait()
        result, error = self._result, self._error
        self._result = self._error = None
        self.path = ""  # handed over: a second ask reads the file again
        if error is not None:
            raise error
        return result
