"""The Qt side of napari_bavis.runner: a job owned by a widget, polled by that widget's timer.

Why not napari's ``create_worker``: its signals object can be deleted (closing the viewer right
after docking) while its thread still emits ``finished``, which aborts the process (issue 13).
Here nothing in the worker touches Qt: the worker only fills a queue, and a QTimer that is a child
of the application drains it and calls back only while the owning widget exists; a job whose
widget was deleted is stopped (its child process terminated). napari_bavis.runner's atexit
handler covers a viewer that simply exits.
"""

from __future__ import annotations

from qtpy.QtCore import QObject, QTimer
from qtpy.QtWidgets import QApplication

from .. import runner
from . import _gc_pause

POLL_MS = 20
_JOBS: list = []
_PUMP: list = []  # the one polling timer (a child of the QApplication), made on first use


def _deleted(obj) -> bool:
    try:
        obj.objectName()
        return False
    except RuntimeError:  # "wrapped C/C++ object ... has been deleted"
        return True


def _pump() -> None:
    for job in list(_JOBS):
        job._poll()
    if not _JOBS and _PUMP:
        _PUMP[0].stop()


def _ensure_pump() -> None:
    if not _PUMP:
        timer = QTimer(QApplication.instance())
        timer.setInterval(POLL_MS)
        timer.timeout.connect(_pump)
        _PUMP.append(timer)
    if not _PUMP[0].isActive():
        _PUMP[0].start()


class Job:
    """``runner.start(ref, kwargs, kind)``; ``on_progress(step, done, total)`` and
    ``on_done((status, value))`` are called on the GUI thread while ``owner`` lives. Once the
    owner is deleted the worker is stopped and nothing is called (no Qt ``destroyed`` slot: PyQt
    can crash running a Python slot of an object being destroyed)."""

    def __init__(self, owner: QObject, ref, kwargs: dict, on_done, on_progress=None, kind: str | None = None):
        self._owner, self._on_done, self._on_progress = owner, on_done, on_progress
        self.run = runner.start(ref, kwargs, kind)
        _JOBS.append(self)
        _ensure_pump()

    @property
    def kind(self) -> str:
        return self.run.kind

    def _poll(self) -> None:
        if _deleted(self._owner):
            self.stop()
            _gc_pause.release(("run", id(self._owner)))  # RunWidget.gc_key: its run will never end
            return
        for msg in self.run.poll():
            if msg[0] == "progress":
                if self._on_progress is not None:
                    self._on_progress(*msg[1:])
                continue
            self._forget()
            self._on_done((msg[0], msg[1]))
            return

    def _forget(self) -> None:
        if self in _JOBS:
            _JOBS.remove(self)

    def cancel(self) -> None:
        self.run.cancel()

    def stop(self) -> None:
        """End the job without a callback (the widget is closing)."""
        self._forget()
        self.run.stop()
