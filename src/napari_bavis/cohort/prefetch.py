"""Read the first scan of a serial run while torch loads, and import the drawing code meanwhile.

Why: a single-scan ``napari-bavis analyze`` is mostly one core's worth of waiting in a row: import
torch and load the model (~1.5-2 s, holding the interpreter), read and resample the scan (~1 s, in
zlib and SimpleITK, which let go of it), preprocess, then import matplotlib for the figures (~0.6 s).
Reading the scan in a thread beside the torch import, and importing matplotlib beside the
preprocessing, takes about a second off each real scan on two cores. Nothing is drawn in the thread
(only imports, which Python's import locks make safe); a scan that fails to read fails in its job,
with its own one line, exactly as without the prefetch.
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
        _import_drawing()

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


def _import_drawing() -> None:
    """The modules export draws with (figure, faithfulness plot, PDF): imported, nothing drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.backends.backend_pdf  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except Exception:  # the export imports them again and reports a real problem there
        pass
