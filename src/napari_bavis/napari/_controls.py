"""Input controls of the run widgets: the scan-layer combo that follows the active layer, the model
picker with its card, and the small helpers both widgets share (worker start, one-line errors, the
snapshot of a scan layer). No analysis here."""

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QWidget,
)

from .. import pipeline
from ..errors import BavisError
from . import _layers, _notify

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

RESEARCH_ONLY = "Research use only — not a medical device."
LOAD_CHECKPOINT = "Load checkpoint…"
CPU_WARNING = "⚠ No GPU: the model runs on the CPU (seconds for the bundled models, minutes for a large one such as SFCN)."
THRESHOLD_MODES = {"value": "map value", "top_percent": "top k %"}


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


def snapshot(layer) -> SimpleNamespace:
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

            path = checkpoint_for(self, path, _notify.show_error)
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
            _notify.show_error(_one_line(status, value, "model"))
            return
        card = value
        self.card = card
        if self.card_changed is not None:
            self.card_changed(card)
        if card.task != self.task:
            need = "a brain-age model" if self.task == "brain_age" else "a Siamese model"
            _notify.show_error(f"model: {card.name} is a {card.task.replace('_', ' ')} model; this widget needs {need}")
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
