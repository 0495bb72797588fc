"""No full garbage collection of the viewer's whole heap while a run is shown (issue 13).

Why: napari holds a few hundred thousand Python objects; a full (generation 2) collection walks
all of them, 0.3-0.9 s of GUI-thread time on a busy 2-core machine, and adding result layers
allocates enough to trigger one. ``hold()`` moves every object that exists when Run is pressed to
the permanent generation (``gc.freeze()``, O(1)), so collections during the run only walk what
the run made; ``release()`` puts them back (``gc.unfreeze()``), so nothing is kept for good: a
full collection happens later on CPython's usual schedule. Nested holds (two widgets running)
count; a hold that is never released (its widget deleted mid-run) ends after ``MAX_HOLD_S``.
"""

from __future__ import annotations

import gc
import time

MAX_HOLD_S = 1800.0
_holders: dict[object, float] = {}


def hold(key) -> None:
    _expire()
    if not _holders:
        gc.freeze()
    _holders[key] = time.monotonic()


def release(key) -> None:
    if _holders.pop(key, None) is not None and not _holders:
        gc.unfreeze()
    _expire()


def held() -> bool:
    return bool(_holders)


def _expire() -> None:
    now = time.monotonic()
    for key, since in list(_holders.items()):
        if now - since > MAX_HOLD_S:
            release(key)
