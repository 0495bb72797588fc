"""What the analysis and the compare widget share: Run / Cancel, progress, the worker process, the
run's bookkeeping (its scan layer, its id), export. Subclasses say what a run computes and shows."""

import itertools
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from .. import settings
from ..errors import BavisError
from . import _gc_pause, _glyph_warmup, _notify
from ._controls import RESEARCH_ONLY, _one_line, _Relay, _same

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

_RUN_IDS = itertools.count(1)


class RunWidget(QWidget):
    """What both widgets share: a worker run with progress, Cancel, one-line errors."""

    TAG = "bavis"
    WHAT = "run"

    def __init__(self, viewer):
        super().__init__()
        self._viewer = viewer
        _glyph_warmup.warm_glyphs_soon(viewer)  # the first legend's glyphs, drawn before a result needs them
        self._relay = _Relay()
        self._relay.step.connect(self._on_step)
        self._run_id = 0
        self._worker = None
        self._export_worker = None
        self.last_export: Path | None = None
        self._pbar = None
        self._inputs: list[QWidget] = []
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("Stop the run now, at any step; nothing is added to the viewer")
        self.progress = QProgressBar()
        self.progress.setToolTip("Steps done out of all steps of this run")
        self.progress.setTextVisible(True)
        self.step_label = QLabel("")
        self.step_label.setToolTip("The step running now")
        self.research = QLabel(f"<b>{RESEARCH_ONLY}</b>")
        self.research.setToolTip("Brain-age estimates and maps are research outputs, not diagnoses")
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self._run_layers: list = []
        self._stages: list = []
        self._staging: list = []  # this run's StagedAdds (their controls sit in napari's stack until inserted)
        self._dropped = ""
        viewer.layers.events.removed.connect(self._on_layer_removed)

    #: "process" (default: a worker process per run), "thread" (tests that patch the pipeline); None: BAVIS_WORKER
    worker_kind: str | None = None

    # subclasses: _job() -> ("module:function", kwargs) or None, setting self._run_layers;
    # _result_stages(value) -> [callables]
    @property
    def running(self) -> bool:
        """True from Run until the last result layer is in the viewer."""
        return self._busy

    _busy = False
    _cancelled = False

    def run(self) -> None:
        if self.running:
            return
        try:
            job = self._job()
        except BavisError as err:
            _notify.show_error(f"{self.WHAT}: {err}")
            return
        if job is None:
            return
        call, kwargs = job
        self._run_id = next(_RUN_IDS)
        self._busy = True
        self._dropped = ""
        self._set_running(True)
        self.progress.setRange(0, 0)
        self.step_label.setText("starting…")
        self._started = time.perf_counter()
        self._cancelled = False
        _gc_pause.hold(self.gc_key)
        self._open_activity()
        from ._process_runner import Job

        run_id = self._run_id
        self._worker = Job(self, call, kwargs, self._on_done, kind=self.worker_kind,
                           on_progress=lambda step, done, total: self._relay.step.emit(run_id, step, done, total))

    @property
    def gc_key(self):
        """This widget's hold on _gc_pause (released when its run ends, or by the job if it is deleted)."""
        return ("run", id(self))

    def cancel(self) -> None:
        """At once: the worker is abandoned (its process ended in the background, see runner) and the
        viewer is as before the run within one poll (20 ms); results being added are taken back."""
        if self._worker is not None:
            self._worker.cancel()
            self.step_label.setText("cancelling…")
            self.cancel_button.setEnabled(False)
        elif self.running and not self._cancelled:  # adding the results: stop there, add nothing
            self._cancelled = True
            self._drop_stages()

    def _layers_gone(self) -> list[str]:
        """Names of this run's scan layers no longer in the viewer (removed, or replaced by another layer)."""
        return [name for name, layer in self._run_layers
                if not any(_same(other, layer) for other in self._viewer.layers)]

    def _on_layer_removed(self, event=None) -> None:
        if not self.running or self._dropped:
            return
        gone = self._layers_gone()
        if gone:
            self._dropped = (f"napari-bavis: {', '.join(gone)} was removed during the {self.WHAT}; "
                             "its results were dropped")
            _notify.show_warning(self._dropped)
            if self._worker is not None:
                self.cancel()
            else:  # already adding results: stop there
                self._drop_stages()

    def _open_activity(self) -> None:
        try:
            from napari.utils import progress

            self._pbar = progress(total=0, desc=f"napari-bavis: {self.WHAT}")
        except Exception:  # the Activity dock is a nicety
            self._pbar = None

    def _close_activity(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    def _on_step(self, run_id: int, step: str, done: int, total: int) -> None:
        if run_id != self._run_id or not self.running:
            return
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(done, total))
        self.step_label.setText(step)
        pbar = self._pbar
        if pbar is not None:
            if pbar.total != total:
                pbar.total = total
            pbar.set_description(f"napari-bavis: {step}")
            pbar.update(max(0, done - pbar.n))

    def _on_done(self, outcome) -> None:
        status, value = outcome
        self._worker = None
        self._close_activity()
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if status == "ok" else 0)
        if self._dropped:  # the scan went mid-run: nothing is added (the notification was shown once)
            status = "dropped"
        if status == "ok":
            self.compute_s = time.perf_counter() - self._started
            self.step_label.setText("adding the results to the viewer…")
            self._stages = list(self._result_stages(value))
            QTimer.singleShot(self.STAGE_PAUSE_MS, self._next_stage)
            return
        self._end_run()
        if status == "dropped":
            self.step_label.setText("results dropped: the scan was removed")
        elif status == "cancelled":
            self.step_label.setText("cancelled")
            _notify.show_info(f"napari-bavis: {self.WHAT} cancelled; nothing was added")
        else:
            self.step_label.setText("failed")
            _notify.show_error(_one_line(status, value, self.WHAT))

    #: Between two result stages: a timer, not a posted call (``singleShot(0)``), so that overdue
    #: timers and input are served between them; a chain of posted calls runs back to back.
    STAGE_PAUSE_MS = 1

    def _next_stage(self) -> None:
        """One result layer per event-loop turn: napari needs GUI-thread time for each new layer,
        and the viewer keeps answering in between."""
        try:
            if self._stages:
                self._stages.pop(0)()
        except BavisError as err:
            self._drop_stages()
            _notify.show_error(f"{self.WHAT}: {err}")
        if self._stages:
            QTimer.singleShot(self.STAGE_PAUSE_MS, self._next_stage)
            return
        self._drop_stages()  # all ran: nothing left to discard but the list
        self._end_run()
        if self._dropped:  # the scan went while its results were being added: none stay
            self.clear_results()
            self.step_label.setText("results dropped: the scan was removed")
            return
        if self._cancelled:  # Cancel while the results were being added: none stay
            self.clear_results()
            self.step_label.setText("cancelled")
            _notify.show_info(f"napari-bavis: {self.WHAT} cancelled; nothing was added")
            return
        self.step_label.setText(f"done in {time.perf_counter() - self._started:.1f} s "
                                f"(computing {self.compute_s:.1f} s)")

    def _staged_add(self, layer):
        """A ``StagedAdd`` of a new result layer, remembered so that stages dropped before its insert
        (Cancel, the scan removed, an error) take its prepared controls out of napari's stack."""
        from ._staged_add import StagedAdd

        add = StagedAdd(self._viewer, layer)
        self._staging.append(add)
        return add

    def _drop_stages(self) -> None:
        self._stages = []
        for add in self._staging:
            if not add.staged:
                add.discard()
        self._staging = []

    def _end_run(self) -> None:
        self._busy = False
        self._set_running(False)
        _gc_pause.release(self.gc_key)

    def _set_running(self, running: bool) -> None:
        for widget in self._inputs:
            widget.setEnabled(not running)
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def wait(self, timeout_s: float = 60.0) -> bool:
        """Process events until the run ends (scripts and tests)."""
        end = time.perf_counter() + timeout_s
        while self.running and time.perf_counter() < end:
            QApplication.processEvents()
            time.sleep(0.005)
        return not self.running


    # --- export: subclasses give _result(), _export_name() and _exporter(kwargs) -------------
    def _choose_export(self) -> None:
        start = settings.load()["export_dir"] or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Export into (a new sub-folder is made)", start)
        if folder:
            self.export_to(folder)

    def export_to(self, parent) -> None:
        """Write the results into a new folder under ``parent`` (through the pipeline, in a worker)."""
        result = self._result()
        if result is None:
            _notify.show_error(f"export: run {'an' if self.WHAT[0] in 'aeiou' else 'a'} {self.WHAT} first")
            return
        parent = Path(parent)
        settings.save(export_dir=str(parent))
        target = export_folder(parent, self._export_name())
        kwargs = {"threshold": float(self.maps.threshold.value()), "mode": self.maps.mode_key(),
                  "min_size_mm3": float(self.maps.min_size.value())}
        write = self._exporter(kwargs)
        self.export_button.setEnabled(False)
        self.step_label.setText("exporting…")

        def export(progress, **_):
            write(result, target, **kwargs)
            return target

        from ._process_runner import Job

        self._export_worker = Job(self, export, {}, self._on_exported, kind="thread")

    def _on_exported(self, outcome) -> None:
        status, value = outcome
        self._export_worker = None
        self.export_button.setEnabled(self._result() is not None)
        if status == "ok":
            self.last_export = Path(value)
            self.step_label.setText(f"exported to {value}")
            _notify.show_info(f"napari-bavis: exported to {value}")
        else:
            self.step_label.setText("export failed")
            _notify.show_error(_one_line(status, value, "export"))

    @property
    def exporting(self) -> bool:
        return self._export_worker is not None


def export_folder(parent: Path, scan_name: str) -> Path:
    """``<parent>/<scan> brain age``; a folder of that name that is not an earlier export is kept."""
    base = "".join(c if c.isalnum() or c in " -_.()" else "_" for c in scan_name).strip() or "scan"
    for n in range(1, 1000):
        candidate = parent / (f"{base} brain age" + (f" {n}" if n > 1 else ""))
        if not candidate.exists() or (candidate / "report.json").is_file():
            return candidate
    raise BavisError(f"{parent}: too many export folders for {scan_name}")


_RunWidget = RunWidget  # the name before the split (tests patch it)
