"""The analysis dock widget: a scan layer -> pipeline.analyze in a worker thread -> brain age and
thresholded map layers on the scan. All analysis happens in napari_bavis.pipeline; this module
only gathers inputs, runs the call off the GUI thread and shows what comes back.

No ``from __future__ import annotations``: napari reads the ``viewer`` annotation at run time.
"""

import itertools
import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .. import pipeline, settings
from ..errors import BavisError
from ..regions import DEFAULT_MODE, DEFAULT_THRESHOLD, activated_regions, threshold_value
from ..summary import brain_age_text, model_label, unique_notes
from . import _layers
from ._display import camera_of

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

RESEARCH_ONLY = "Research use only — not a medical device."
LOAD_CHECKPOINT = "Load checkpoint…"
CPU_WARNING = "⚠ Running on the CPU: expect a slow analysis (minutes for a full-size model)."
THRESHOLD_MODES = {"value": "map value", "top_percent": "top k %"}
_RUN_IDS = itertools.count(1)


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    step = Signal(int, str, int, int)


def _start_worker(owner, func, *args, on_done):
    """``func(*args)`` in a thread of this interpreter; ``on_done(value)`` on the GUI thread (owner's timer)."""
    from ._process_runner import Job

    return Job(owner, lambda progress=None, cancel=None: func(*args), {}, lambda o: on_done(o[1]), kind="thread")


def _one_line(status: str, err: BaseException, what: str) -> str:
    if status == "crash":
        text = " ".join(str(err).split()) or "no message"
        return f"{what} failed unexpectedly: {getattr(err, 'type_name', type(err).__name__)}: {text[:200]}"
    return f"{what}: {err}"


def _snapshot(layer) -> SimpleNamespace:
    """What the worker needs from a layer, taken on the GUI thread (plain data: it is pickled to a worker process)."""
    source = (layer.metadata or {}).get("bavis_source")
    return SimpleNamespace(
        name=layer.name, data=np.asarray(layer.data), scale=tuple(layer.scale), translate=tuple(layer.translate),
        axis_labels=tuple(layer.axis_labels), units=tuple(str(u) for u in layer.units),
        metadata={} if source is None else {"bavis_source": source},
        rgb=getattr(layer, "rgb", False), multiscale=getattr(layer, "multiscale", False),
    )


def _same(a, b) -> bool:
    """Layer identity through napari's proxies (a docked widget's viewer hands out wrapped layers)."""
    return getattr(a, "__wrapped__", a) is getattr(b, "__wrapped__", b)


def _scan_layers(viewer) -> list:
    from napari.layers import Image

    return [
        layer for layer in viewer.layers
        if isinstance(layer, Image) and layer.ndim == 3 and not layer.rgb and not layer.multiscale
        and not _layers.is_result_layer(layer)
    ]


class LayerCombo(QComboBox):
    """3D image layers of the viewer, kept in sync with the layer list (additions, removals, renames)."""

    def __init__(self, viewer, tooltip: str, follow_active: bool = True):
        super().__init__()
        self._viewer = viewer
        self._follow = follow_active
        self.setToolTip(tooltip)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(14)
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self.refresh)
        viewer.layers.events.moved.connect(self.refresh)
        viewer.layers.selection.events.active.connect(self._follow_active)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.refresh()
        self._follow_active()  # start on the layer the user has selected, not the first one

    def _follow_active(self, event=None) -> None:
        """The combo shows the layer the user selected last (not while a run holds the inputs)."""
        active = self._viewer.layers.selection.active
        if self._follow and active is not None and self.isEnabled() and any(_same(active, s) for s in _scan_layers(self._viewer)):
            self.select(active)

    def _on_inserted(self, event) -> None:
        event.value.events.name.connect(self.refresh)
        self.refresh()

    def refresh(self, *_) -> None:
        current = self.layer()
        names = [layer.name for layer in _scan_layers(self._viewer)]
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        if current is not None and current.name in names:
            self.setCurrentText(current.name)
        self.blockSignals(False)
        self._last = self.layer()

    def layer(self):
        name = self.currentText()
        if name and name in self._viewer.layers:
            return self._viewer.layers[name]
        return None

    def select(self, layer) -> None:
        self.setCurrentText(layer.name)


class ModelPicker(QWidget):
    """Model combo (bundled names, loaded checkpoints, "Load checkpoint…"), the card, the device."""

    def __init__(self, task: str, default: str, tooltip: str):
        super().__init__()
        self.task = task
        self.combo = QComboBox()
        self.combo.setToolTip(tooltip)
        self.card_text = QLabel("")
        self.card_text.setWordWrap(True)
        self.card_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.card_text.setToolTip("The model card: what the model expects and what it may be used for")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.device.setToolTip("Where the model runs: auto = CUDA when available, otherwise the CPU")
        self.cpu_warning = QLabel(CPU_WARNING)
        self.cpu_warning.setWordWrap(True)
        self.cpu_warning.setStyleSheet("color: #e69500;")
        self.cpu_warning.setToolTip("No GPU in use: the analysis works, only slower")
        self.cpu_warning.setVisible(False)
        self._cuda = None  # unknown until probed (off the GUI thread: importing torch takes seconds)
        self._checkpoints: dict[str, str] = {}
        self._inspecting = None
        self._previous = ""
        self.card = None  # the chosen model's card, once read
        self.card_changed = None  # called with each card read
        bundled = [name for name in pipeline.bundled_models() if self._task_of_bundled(name) == task]
        self.combo.addItems(bundled)
        self.combo.addItem(LOAD_CHECKPOINT)
        if default in bundled:
            self.combo.setCurrentText(default)
        self.combo.activated.connect(self._on_activated)
        self.combo.currentTextChanged.connect(self._on_changed)
        self.device.currentTextChanged.connect(self._update_cpu_warning)
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addRow("Model", self.combo)
        layout.addRow(self.card_text)
        layout.addRow("Device", self.device)
        layout.addRow(self.cpu_warning)
        self._previous = self.combo.currentText()
        self.inspect()

    @staticmethod
    def _task_of_bundled(name: str) -> str:
        return "siamese" if "siamese" in name else "brain_age"

    def model(self):
        """What pipeline.analyze/compare take: a bundled name or a checkpoint path; None if none chosen."""
        text = self.combo.currentText()
        if text == LOAD_CHECKPOINT or not text:
            return None
        return self._checkpoints.get(text, text)

    def _on_changed(self, text: str) -> None:
        """Any change of model (user, settings, script) shows that model's card."""
        if text and text != LOAD_CHECKPOINT and text != self._previous:
            self._previous = text
            self.inspect()

    def _on_activated(self, index: int) -> None:
        if self.combo.itemText(index) != LOAD_CHECKPOINT:
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Load a model checkpoint", "", "Checkpoints (*.pt *.pth *.p *.ckpt);;All files (*)"
        )
        if path:  # bare released weights: ask which preset, import beside them (_preset_dialog.py)
            from ._preset_dialog import checkpoint_for

            path = checkpoint_for(self, path, show_error)
        if path:
            self.set_checkpoint(path)
        else:
            self.combo.setCurrentText(self._previous)

    def set_checkpoint(self, path) -> None:
        label = Path(path).name
        self._checkpoints[label] = str(path)
        if self.combo.findText(label) < 0:
            self.combo.insertItem(self.combo.count() - 1, label)
        if self.combo.currentText() == label:
            self._previous = label
            self.inspect()  # the same name, maybe another file
        else:
            self.combo.setCurrentText(label)

    def set_model(self, name: str) -> None:
        if self.combo.findText(name) >= 0 and name != LOAD_CHECKPOINT:
            self.combo.setCurrentText(name)

    def inspect(self) -> None:
        """Read the card (and whether CUDA exists) in a worker; a bad file becomes one notification."""
        model = self.model()
        if model is None:
            self.card_text.setText("No model chosen: pick a bundled model or load a checkpoint.")
            return
        self.card_text.setText("reading the model card…")
        self._inspecting = model
        _start_worker(self, _inspect_model, model, on_done=self._on_inspected)

    def _on_inspected(self, outcome) -> None:
        model, status, value, cuda = outcome
        self._cuda = cuda
        self._update_cpu_warning()
        if model != self._inspecting:
            return
        self._inspecting = None
        if status != "ok":
            self.card_text.setText("The model card could not be read.")
            show_error(_one_line(status, value, "model"))
            return
        card = value
        self.card = card
        if self.card_changed is not None:
            self.card_changed(card)
        if card.task != self.task:
            need = "a brain-age model" if self.task == "brain_age" else "a Siamese model"
            show_error(f"model: {card.name} is a {card.task.replace('_', ' ')} model; this widget needs {need}")
        self.card_text.setText(card_text(card))

    def _update_cpu_warning(self, *_) -> None:
        device = self.device.currentText()
        self.cpu_warning.setVisible(device == "cpu" or (device == "auto" and self._cuda is False))

    def show_used_device(self, device: str) -> None:
        if str(device).startswith("cpu"):
            self.cpu_warning.setVisible(True)

    @property
    def inspecting(self) -> bool:
        return self._inspecting is not None


def _inspect_model(model):
    _warm_imports()
    try:
        _, card = pipeline.load_model(model, device="cpu")
        status, value = "ok", card
    except BavisError as err:
        status, value = "error", err
    except Exception as err:
        log.exception("reading a model card failed")
        status, value = "crash", err
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except Exception:
        cuda = False
    return model, status, value, cuda


def _warm_imports() -> None:
    """Load the pipeline's heavy native libraries now, while the user is still choosing inputs:
    loading a shared library holds the GIL, and doing it during a run stalls the GUI."""
    try:
        import SimpleITK  # noqa: F401
        import torch  # noqa: F401

        from .. import explain, preprocess  # noqa: F401
    except Exception:  # a missing piece is reported by the run itself, in one line
        pass


def card_text(card) -> str:
    """The card lines a user needs before trusting a number: input space, ages, licence, use."""
    s = pipeline.card_summary(card)
    lines = [f"<b>{s['name']}</b> {s.get('version') or ''} ({s.get('architecture')})"]
    grid = getattr(card, "model_grid", None) if getattr(card, "grid", None) else None
    space = f"{str(s.get('input_kind') or '?').upper()}"
    if grid is not None:
        space += f" on {'×'.join(map(str, grid.shape))} voxels at {'×'.join(f'{v:g}' for v in grid.voxel_size)} mm MNI"
    lines.append(f"Input: {space}")
    if s.get("training_age_range"):
        lo, hi = s["training_age_range"]
        lines.append(f"Training ages: {lo:g}–{hi:g} years")
    lines.append(f"Licence: {s.get('licence')}")
    lines.append(f"Intended use: {s.get('intended_use')}")
    return "<br>".join(lines)


class MapsPanel(QGroupBox):
    """Threshold (value or top k %), minimum region size, regions table and regions Labels layer.

    Changing the threshold only swaps the map layers' colormaps (alpha 0 at and below the
    cutoff): nothing is recomputed. The regions follow after a short pause in the typing.
    """

    REGION_DELAY_MS = 150

    def __init__(self, viewer, tag: str):
        super().__init__("Maps and activated regions")
        self._viewer = viewer
        self._tag = tag
        self._entries: list[dict] = []
        self._regions: list = []
        self._last_value = {"value": 0.3, "top_percent": DEFAULT_THRESHOLD}
        self.mode = QComboBox()
        for key, text in THRESHOLD_MODES.items():
            self.mode.addItem(text, key)
        self.mode.setToolTip("Threshold as a map value in [0, 1] (the thesis used 0.3), or keep the top k % of each map")
        self.threshold = QDoubleSpinBox()
        self.threshold.setKeyboardTracking(False)
        self.threshold.setToolTip("Voxels at or below this are fully transparent; the scan under them is unchanged")
        self.min_size = QDoubleSpinBox()
        self.min_size.setRange(0.0, 1e6)
        self.min_size.setDecimals(0)
        self.min_size.setSingleStep(50.0)
        self.min_size.setValue(50.0)
        self.min_size.setSuffix(" mm³")
        self.min_size.setToolTip("Connected regions smaller than this are left out of the table and the Labels layer")
        self.regions_of = QComboBox()
        self.regions_of.setToolTip("Which map's activated regions the table and the Labels layer show")
        self.table = QTableWidget(0, 7)
        self.table.setHorizontalHeaderLabels(["#", "volume mm³", "peak", "peak RAS mm", "centroid RAS mm", "share %",
                                              "atlas region"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(120)
        self.table.setToolTip("Connected regions above the threshold, biggest share of the map first; click a row to go there")
        self.cutoff_label = QLabel("")
        self.cutoff_label.setToolTip("The map value each map is cut at (differs per map in top k % mode)")
        self.mode.setCurrentIndex(list(THRESHOLD_MODES).index(DEFAULT_MODE))  # top 5 %: readable regions
        self._set_mode_range(DEFAULT_MODE)
        self.threshold.setValue(DEFAULT_THRESHOLD)

        form = QFormLayout()
        row = QHBoxLayout()
        row.addWidget(self.mode)
        row.addWidget(self.threshold)
        form.addRow("Threshold", row)
        form.addRow("Min. region", self.min_size)
        form.addRow("Regions of", self.regions_of)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.cutoff_label)
        layout.addWidget(self.table)

        self._region_timer = QTimer(self)
        self._region_timer.setSingleShot(True)
        self._region_timer.setInterval(self.REGION_DELAY_MS)
        self._region_timer.timeout.connect(self.update_regions)
        self.mode.currentIndexChanged.connect(self._on_mode)
        self.threshold.valueChanged.connect(self.apply_threshold)
        self.min_size.valueChanged.connect(self._region_timer.start)
        self.regions_of.currentIndexChanged.connect(self.update_regions)
        self.table.cellClicked.connect(self.go_to_region)
        viewer.layers.events.removed.connect(lambda *_: QTimer.singleShot(0, self._prune))

    def _prune(self) -> None:
        """A map layer the user deleted leaves "Regions of", the table and the regions layer."""
        live = self._live_entries()
        if len(live) == len(self._entries):
            return
        selected = self.selected_entry()
        self._entries = live
        self.regions_of.blockSignals(True)
        self.regions_of.clear()
        for entry in live:
            self.regions_of.addItem(entry["layer"].name)
        if selected in live:
            self.regions_of.setCurrentIndex(live.index(selected))
        self.regions_of.blockSignals(False)
        if not live:
            _layers.remove_result_layers(self._viewer, self._tag, "regions")
        self.update_regions()

    # --- threshold ---------------------------------------------------------------------------
    def mode_key(self) -> str:
        return self.mode.currentData()

    def _set_mode_range(self, mode: str) -> None:
        if mode == "value":
            self.threshold.setRange(0.0, 1.0)
            self.threshold.setDecimals(3)
            self.threshold.setSingleStep(0.05)
            self.threshold.setSuffix("")
        else:
            self.threshold.setRange(0.1, 100.0)
            self.threshold.setDecimals(1)
            self.threshold.setSingleStep(1.0)
            self.threshold.setSuffix(" %")

    def _on_mode(self, *_) -> None:
        mode = self.mode_key()
        other = "top_percent" if mode == "value" else "value"
        self._last_value[other] = self.threshold.value()
        self.threshold.blockSignals(True)
        self._set_mode_range(mode)
        self.threshold.setValue(self._last_value[mode])
        self.threshold.blockSignals(False)
        self.apply_threshold()

    def set_threshold(self, value: float, mode: str = "value") -> None:
        if mode != self.mode_key():
            self.mode.setCurrentIndex(list(THRESHOLD_MODES).index(mode))
        self.threshold.setValue(value)

    def restore(self, prefs: dict) -> None:
        """The threshold saved in the preferences, if it is valid for its mode."""
        mode, value = prefs.get("threshold_mode", "value"), float(prefs.get("threshold", -1))
        if (mode == "value" and 0.0 <= value <= 1.0) or (mode == "top_percent" and 0.0 < value <= 100.0):
            self.set_threshold(value, mode)

    def cutoff(self, values: np.ndarray) -> float:
        return threshold_value(values, self.threshold.value(), self.mode_key())

    def apply_threshold(self, *_) -> None:
        """Swap each map layer's colormap for one transparent up to its cutoff; regions follow."""
        cutoffs = []
        for entry in self._live_entries():
            cut = self.cutoff(entry["values"])
            entry["layer"].colormap = _layers.threshold_colormap(cut)
            cutoffs.append(f"{_layers.method_title(entry['method'])} {cut:.3f}")
        self.cutoff_label.setText("cut at: " + ", ".join(cutoffs) if cutoffs else "")
        if self._entries:
            self._region_timer.start()

    # --- maps --------------------------------------------------------------------------------
    def set_maps(self, entries: list[dict]) -> None:
        """entries: dicts with layer, values, affine (display grid -> RAS), geometry, method, scan."""
        self._entries = entries
        self.regions_of.blockSignals(True)
        self.regions_of.clear()
        for entry in entries:
            self.regions_of.addItem(entry["layer"].name)
        preferred = next((i for i, e in enumerate(entries) if e["method"] == "smoe*gradcam++"), 0)
        self.regions_of.setCurrentIndex(preferred)
        self.regions_of.blockSignals(False)
        self.apply_threshold()
        self._region_timer.stop()
        self.update_regions()

    def clear(self) -> None:
        self._entries = []
        self._regions = []
        self.regions_of.clear()
        self.table.setRowCount(0)
        self.cutoff_label.setText("")

    def _live_entries(self) -> list[dict]:
        return [e for e in self._entries if e["layer"] in self._viewer.layers]

    def selected_entry(self):
        index = self.regions_of.currentIndex()
        return self._entries[index] if 0 <= index < len(self._entries) else None

    def update_regions(self, *_) -> None:
        self._region_timer.stop()
        entry = self.selected_entry()
        old = _layers.result_layers(self._viewer, self._tag, "regions")
        visible = any(layer.visible for layer in old)
        if entry is None:
            self._regions = []
            self.table.setRowCount(0)
            return
        cut = self.cutoff(entry["values"])
        pre = entry.get("first_regions")  # computed by the worker process for this very cut
        if pre is not None and pre[:3] == (entry["method"], float(cut), float(self.min_size.value())):
            labels, table = pre[3], pre[4]
        else:
            labels, table = activated_regions(entry["values"], entry["affine"], cut, self.min_size.value())
            if entry.get("name_regions") is not None:  # the analysis names them after its atlas
                table = entry["name_regions"](labels, table)
        self._regions = table
        name = f"{entry['scan']} · regions"
        for layer in old:
            if layer.name != name:
                self._viewer.layers.remove(layer)
        if labels.dtype.itemsize > 2 and labels.size and int(labels.max()) < 65536:
            labels = labels.astype(np.uint8 if int(labels.max()) < 256 else np.uint16)  # napari draws these faster
        kwargs = _layers.regions_layer_kwargs(entry["geometry"], name, self._tag)
        kwargs["visible"] = visible
        kwargs["metadata"]["bavis_method"] = entry["method"]
        self._regions_layer = _layers.put_layer(self._viewer, labels, kwargs, "labels")
        self._fill_table(table)

    def _fill_table(self, table) -> None:
        self.table.setRowCount(len(table))
        for row, region in enumerate(table):
            cells = [
                str(region.label),
                f"{region.volume_mm3:.0f}",
                f"{region.peak_value:.2f}",
                ", ".join(f"{v:.0f}" for v in region.peak_ras_mm),
                ", ".join(f"{v:.0f}" for v in region.centroid_ras_mm),
                f"{100 * region.share_of_map:.1f}",
                "" if region.atlas_name is None else
                f"{region.atlas_name} ({100 * (region.atlas_overlap or 0):.0f} %)",
            ]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
                self.table.setItem(row, col, item)

    @property
    def regions(self) -> list:
        return list(self._regions)

    def go_to_region(self, row: int, *_) -> None:
        """Move the slice and the camera to the region's centroid (RAS x, y, z -> world S, A, R)."""
        if not 0 <= row < len(self._regions):
            return
        world = _layers.ras_to_world(self._regions[row].centroid_ras_mm)
        viewer = self._viewer
        lead = viewer.dims.ndim - 3
        for axis, value in enumerate(world):
            viewer.dims.set_point(lead + axis, value)
        displayed = [d - lead for d in viewer.dims.displayed if d >= lead]
        center = tuple(world[d] for d in displayed)
        camera = camera_of(viewer)
        camera.center = center if len(center) == 3 else (0.0, *center)
        for layer in _layers.result_layers(viewer, self._tag, "regions"):
            layer.visible = True
            layer.selected_label = self._regions[row].label
            layer.show_selected_label = False


class _RunWidget(QWidget):
    """What both widgets share: a worker run with progress, Cancel, one-line errors."""

    TAG = "bavis"
    WHAT = "run"

    def __init__(self, viewer):
        super().__init__()
        self._viewer = viewer
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
        self.cancel_button.setToolTip("Stop at the end of the current step; nothing is added to the viewer")
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

    def run(self) -> None:
        if self.running:
            return
        try:
            job = self._job()
        except BavisError as err:
            show_error(f"{self.WHAT}: {err}")
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
        self._open_activity()
        from ._process_runner import Job

        run_id = self._run_id
        self._worker = Job(self, call, kwargs, self._on_done, kind=self.worker_kind,
                           on_progress=lambda step, done, total: self._relay.step.emit(run_id, step, done, total))

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()  # a worker process that has not stopped within 1 s is terminated
            self.step_label.setText("cancelling…")
            self.cancel_button.setEnabled(False)

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
            show_warning(self._dropped)
            if self._worker is not None:
                self.cancel()
            else:  # already adding results: stop there
                self._stages = []

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
            QTimer.singleShot(0, self._next_stage)
            return
        self._busy = False
        self._set_running(False)
        if status == "dropped":
            self.step_label.setText("results dropped: the scan was removed")
        elif status == "cancelled":
            self.step_label.setText("cancelled")
            show_info(f"napari-bavis: {self.WHAT} cancelled; nothing was added")
        else:
            self.step_label.setText("failed")
            show_error(_one_line(status, value, self.WHAT))

    def _next_stage(self) -> None:
        """One result layer per event-loop turn: napari needs GUI-thread time for each new layer,
        and the viewer keeps answering in between."""
        try:
            if self._stages:
                self._stages.pop(0)()
        except BavisError as err:
            self._stages = []
            show_error(f"{self.WHAT}: {err}")
        if self._stages:
            QTimer.singleShot(0, self._next_stage)
            return
        self._busy = False
        self._set_running(False)
        if self._dropped:  # the scan went while its results were being added: none stay
            self.clear_results()
            self.step_label.setText("results dropped: the scan was removed")
            return
        self.step_label.setText(f"done in {time.perf_counter() - self._started:.1f} s "
                                f"(computing {self.compute_s:.1f} s)")

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
            show_error(f"export: run {'an' if self.WHAT[0] in 'aeiou' else 'a'} {self.WHAT} first")
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
            show_info(f"napari-bavis: exported to {value}")
        else:
            self.step_label.setText("export failed")
            show_error(_one_line(status, value, "export"))

    @property
    def exporting(self) -> bool:
        return self._export_worker is not None


class AnalysisWidget(_RunWidget):
    """Brain age and explanation maps of one scan layer."""

    TAG = "analysis"
    WHAT = "analysis"

    def __init__(self, viewer: "napari.viewer.Viewer"):
        super().__init__(viewer)
        prefs = settings.load()
        self.analysis = None
        self._geometry = None
        self._scan_name = ""

        self.image = LayerCombo(viewer, "The scan to analyse: any 3D image layer (opened with this plugin for exact millimetres)")
        self.model = ModelPicker("brain_age", prefs["model"], f"Bundled models ({pipeline.DEFAULT_MODEL}: real adult brains, "
                                 "the default; demo: phantoms only), or your own checkpoint with its model card")
        if prefs["device"] in ("auto", "cpu", "cuda"):
            self.model.device.setCurrentText(prefs["device"])
        if prefs["model"] not in pipeline.BUNDLED and Path(str(prefs["model"])).is_file():
            self.model.set_checkpoint(prefs["model"])  # the checkpoint used last time
        self.age = QDoubleSpinBox()
        self.age.setRange(-1.0, 120.0)
        self.age.setDecimals(1)
        self.age.setSpecialValueText("not given")
        self.age.setValue(-1.0)
        self.age.setSuffix(" y")
        self.age.setToolTip("Chronological age in years (optional): needed for the brain-age gap")
        self.sex = QComboBox()
        self.sex.addItems(["not given", "F", "M"])
        self.sex.setToolTip("Sex (optional): required by models whose card has a sex input")
        self.methods = {}
        methods_box = QGroupBox("Maps")
        grid = QGridLayout(methods_box)
        chosen = [m for m in prefs["methods"] if m in pipeline.ALL_METHODS] or list(pipeline.DEFAULT_METHODS)
        for i, method in enumerate(pipeline.ALL_METHODS):
            box = QCheckBox(_layers.method_title(method))
            box.setChecked(method in chosen)
            box.setToolTip(f"Compute the {_layers.method_title(method)} explanation map")
            box.toggled.connect(self._save_methods)
            self.methods[method] = box
            grid.addWidget(box, i // 2, i % 2)

        self.results = QPlainTextEdit()
        self.results.setReadOnly(True)
        self.results.setMaximumHeight(130)
        self.results.setPlaceholderText("Results appear here after a run.")
        self.results.setToolTip("The prediction and its context; select and copy (Ctrl+C) or use Copy")
        copy = QPushButton("Copy")
        copy.setToolTip("Copy the results text to the clipboard")
        copy.clicked.connect(lambda: QApplication.clipboard().setText(self.results.toPlainText()))
        self.qc_mask = QCheckBox("Brain mask layer")
        self.qc_mask.setToolTip("Show the brain mask used by preprocessing over the scan")
        self.qc_registration = QCheckBox("Check registration")
        self.qc_registration.setToolTip("Show the registered scan (magenta) over the template (green) on the model grid")
        self.qc_mask.toggled.connect(self._update_qc)
        self.qc_registration.toggled.connect(self._update_qc)
        self.maps = MapsPanel(viewer, self.TAG)
        self.maps.restore(prefs)
        self.maps.threshold.valueChanged.connect(self._save_threshold)
        self.maps.mode.currentIndexChanged.connect(self._save_threshold)
        from ._readout_panel import ReadoutPanel

        self.readout = ReadoutPanel()
        self.clear_button = QPushButton("Clear results")
        self.clear_button.setToolTip("Remove this widget's map, region and QC layers")
        self.clear_button.clicked.connect(self.clear_results)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Write the maps (NIfTI, scan space), a PNG figure and a JSON report into a new folder")
        self.export_button.clicked.connect(self._choose_export)
        self.export_button.setEnabled(False)
        self.run_button.setToolTip("Preprocess, predict the brain age and compute the maps in the background")

        self.model.combo.currentTextChanged.connect(self._save_model)
        self.model.device.currentTextChanged.connect(lambda d: settings.save(device=d))

        form = QFormLayout()
        form.addRow("Image", self.image)
        form.addRow(self.model)
        form.addRow("Age", self.age)
        form.addRow("Sex", self.sex)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        qc = QHBoxLayout()
        qc.addWidget(self.qc_mask)
        qc.addWidget(self.qc_registration)
        results_row = QHBoxLayout()
        results_row.addWidget(self.results)
        results_row.addWidget(copy, alignment=Qt.AlignmentFlag.AlignTop)
        bottom = QHBoxLayout()
        bottom.addWidget(self.clear_button)
        bottom.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.research)
        layout.addLayout(form)
        layout.addWidget(methods_box)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.step_label)
        layout.addLayout(results_row)
        layout.addLayout(qc)
        layout.addWidget(self.maps)
        layout.addWidget(self.readout)
        layout.addLayout(bottom)
        layout.addStretch(1)
        self._inputs = [self.image, self.model, self.age, self.sex, methods_box, self.export_button]
        self.model.card_changed = lambda card: self._apply_sex_rule()
        self._apply_sex_rule()

    SEX_TIP = "Sex (optional): required by models whose card has a sex input"

    def _apply_sex_rule(self) -> None:
        """Sex is greyed out, with the reason, for a model that takes none (it would be ignored)."""
        card = self.model.card
        takes_none = card is not None and getattr(card, "sex_encoding", None) is None
        if takes_none:
            self.sex.setCurrentText("not given")
            self.sex.setEnabled(False)
            self.sex.setToolTip(f"{card.name} takes no sex input: the estimate does not depend on it")
        else:
            self.sex.setEnabled(not self.running)
            self.sex.setToolTip(self.SEX_TIP)

    def _set_running(self, running: bool) -> None:
        super()._set_running(running)
        self._apply_sex_rule()

    # --- inputs and settings -------------------------------------------------------------------
    def chosen_methods(self) -> list[str]:
        return [m for m, box in self.methods.items() if box.isChecked()]

    def _save_methods(self, *_) -> None:
        settings.save(methods=self.chosen_methods())

    def _save_model(self, name: str) -> None:
        model = self.model.model()
        if model is not None:
            settings.save(model=str(model))

    def _save_threshold(self, *_) -> None:
        settings.save(threshold=float(self.maps.threshold.value()), threshold_mode=self.maps.mode_key())

    def _job(self):
        layer = self.image.layer()
        if layer is None:
            raise BavisError("open a 3D scan first (File > Open, or File > Open Sample > napari-bavis)")
        model = self.model.model()
        if model is None:
            raise BavisError("choose a model: a bundled one or Load checkpoint…")
        snapshot = _snapshot(layer)
        self._pending = (layer.name, _layers.scan_geometry(snapshot))
        self._run_layers = [(layer.name, layer)]
        age = self.age.value()
        sex = self.sex.currentText()
        return "napari_bavis.napari._jobs:analyze_snapshot", {
            "snapshot": snapshot,
            "model": model,
            "chronological_age": None if age < 0 else float(age),
            "sex": None if sex == "not given" else sex,
            "methods": tuple(self.chosen_methods()),
            "device": self.model.device.currentText(),
            "regions": (float(self.maps.threshold.value()), self.maps.mode_key(), float(self.maps.min_size.value())),
        }

    # --- results -----------------------------------------------------------------------------
    def _result_stages(self, analysis):
        scan_name, geometry = self._pending
        names = {_layers.map_layer_name(scan_name, m, analysis.card.name) for m in analysis.maps}
        entries = []

        def start() -> None:
            for layer in _layers.result_layers(self._viewer, self.TAG, "map"):
                if layer.name not in names:
                    self._viewer.layers.remove(layer)
            _layers.remove_result_layers(self._viewer, self.TAG, "qc")
            self.maps.clear()
            self.analysis, self._geometry, self._scan_name = analysis, geometry, scan_name
            self.results.setPlainText(result_text(analysis))
            self.readout.show_analysis(analysis)
            self.model.show_used_device(analysis.device)
            for note in analysis.notes:
                show_warning(note)

        def add_map(method, values) -> None:
            name = _layers.map_layer_name(scan_name, method, analysis.card.name)
            kwargs = _layers.map_layer_kwargs(geometry, name, self.maps.cutoff(values), self.TAG, method)
            layer = _layers.put_layer(self._viewer, values, kwargs)
            entries.append({"layer": layer, "values": values, "affine": analysis.scan.display_affine,
                            "geometry": geometry, "method": method, "scan": scan_name,
                            "name_regions": analysis.name_regions,
                            "first_regions": getattr(analysis, "first_regions", None)})

        def finish() -> None:
            self.maps.set_maps(entries)
            self.export_button.setEnabled(True)

        yield start
        for method, values in analysis.maps.items():
            yield lambda m=method, v=values: add_map(m, v)
        yield self._update_qc
        yield finish

    def clear_results(self) -> None:
        _layers.remove_result_layers(self._viewer, self.TAG)
        self.maps.clear()
        self.readout.clear()
        self.analysis = None
        self.results.clear()
        self.export_button.setEnabled(False)

    def _update_qc(self, *_) -> None:
        _layers.remove_result_layers(self._viewer, self.TAG, "qc")
        if self.analysis is None:
            return
        wanted = set()
        if self.qc_mask.isChecked():
            wanted.add("brain mask")
        if self.qc_registration.isChecked():
            wanted |= {"template", "registered scan"}
        data = _layers.qc_layer_data(self.analysis.qc, self._scan_name, self.TAG)
        for key in ("template", "registered scan", "brain mask"):
            if key in wanted and key in data:
                layer_data, kwargs, kind = data[key]
                _layers.put_layer(self._viewer, layer_data, kwargs, kind)
        if wanted and not wanted & set(data):
            show_warning("napari-bavis: this preprocessing produced no QC images")

    # --- export ------------------------------------------------------------------------------
    def _result(self):
        return self.analysis

    def _export_name(self) -> str:
        return self._scan_name

    def _exporter(self, kwargs: dict):
        entry = self.maps.selected_entry()
        if entry is not None:
            kwargs["figure_method"] = entry["method"]
        return pipeline.export_analysis


def export_folder(parent: Path, scan_name: str) -> Path:
    """``<parent>/<scan> brain age``; a folder of that name that is not an earlier export is kept."""
    base = "".join(c if c.isalnum() or c in " -_.()" else "_" for c in scan_name).strip() or "scan"
    for n in range(1, 1000):
        candidate = parent / (f"{base} brain age" + (f" {n}" if n > 1 else ""))
        if not candidate.exists() or (candidate / "report.json").is_file():
            return candidate
    raise BavisError(f"{parent}: too many export folders for {scan_name}")


def result_text(analysis) -> str:
    """The copyable result: brain age, ages, gaps, warnings, model."""
    pred, card = analysis.prediction, analysis.card
    lines = [f"Scan: {getattr(analysis.scan, 'label', None) or '?'} · model {model_label(card)}"]
    if pred is not None:
        lines.append(f"Brain age: {brain_age_text(pred.brain_age, pred.uncertainty, 'years')}")
        if pred.chronological_age is not None:
            lines.append(f"Chronological age: {pred.chronological_age:.1f} years")
            lines.append(f"Brain-age gap: {pred.gap:+.1f} years (raw)")
            if pred.gap_corrected is not None:
                lines.append(f"Brain-age gap: {pred.gap_corrected:+.1f} years (bias-corrected, {pred.correction_method})")
            else:
                lines.append("Bias-corrected gap: not available (the model card has no bias correction)")
        else:
            lines.append("Chronological age: not given (no brain-age gap)")
    for note in unique_notes(analysis.notes):  # the file's, the preprocessing QC's and the ages' warnings
        lines.append(f"⚠ {note}")
    lines.append(f"Model: {model_label(card)} ({card.architecture}) on {analysis.device}")
    if analysis.maps:
        lines.append("Maps: " + ", ".join(_layers.method_title(m) for m in analysis.maps))
    if getattr(analysis, "region_importance", None):
        from ..readout_figure import importance_lines

        lines.append("Hiding a region changes the brain age by: " + "; ".join(importance_lines(analysis.region_importance, 3)))
    lines.append(RESEARCH_ONLY)
    return "\n".join(lines)
