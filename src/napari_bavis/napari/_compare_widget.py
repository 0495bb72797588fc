"""The compare dock widget: two scan layers -> pipeline.compare (Siamese) in a worker -> similarity,
distance, nearest reference of each scan and one thresholded map per scan and method.

No ``from __future__ import annotations``: napari reads the ``viewer`` annotation at run time.
"""

from typing import TYPE_CHECKING

from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
)

from .. import methods, pipeline, settings
from ..errors import BavisError
from ..summary import unique_notes
from . import _layers, _notify, _side_by_side
from ._controls import RESEARCH_ONLY, LayerCombo, ModelPicker, snapshot
from ._layout import ResultText, interactive_columns, scrolled_layout
from ._maps_panel import MapsPanel
from ._run_widget import RunWidget
from ._staged_add import StagedAdd

if TYPE_CHECKING:
    import napari

#: Smooth Grad-CAM++ is not offered for Siamese maps (pipeline.compare drops it).
COMPARE_METHODS = methods.SIAMESE_METHODS


class CompareWidget(RunWidget):
    """Similarity of two scans under a Siamese encoder, with each scan's own maps."""

    TAG = "compare"
    WHAT = "comparison"

    def __init__(self, viewer: "napari.viewer.Viewer"):
        super().__init__(viewer)
        prefs = settings.load()
        self.comparison = None
        self._names = ("", "")
        # two combos: neither follows the active layer (both would end on the same scan)
        self.image_a = LayerCombo(viewer, "First scan (A): any 3D image layer", follow_active=False)
        self.image_b = LayerCombo(viewer, "Second scan (B): any 3D image layer", follow_active=False)
        if self.image_b.count() > 1:
            self.image_b.setCurrentIndex(1)
        self.model = ModelPicker("siamese", "demo-siamese", "Bundled Siamese demo model, or your own Siamese checkpoint")
        if prefs["device"] in ("auto", "cpu", "cuda"):
            self.model.device.setCurrentText(prefs["device"])
        self.age_a, self.age_b = (_age_box(f"Chronological age of scan {x} in years (optional): one outside the "
                                           "model's training ages gives a warning") for x in "AB")
        self.methods = {}
        methods_box = QGroupBox("Maps")
        grid = QGridLayout(methods_box)
        for i, method in enumerate(COMPARE_METHODS):
            box = QCheckBox(_layers.method_title(method))
            box.setChecked(method in pipeline.DEFAULT_METHODS)
            box.setToolTip(f"Compute the {_layers.method_title(method)} map of each scan from its own branch")
            self.methods[method] = box
            grid.addWidget(box, i // 2, i % 2)
        self.results = ResultText("Similarity and nearest references appear here after a run.", "Select and copy (Ctrl+C)")
        self.side_by_side = QCheckBox("Side by side (grid: A left, B right)")
        self.side_by_side.setChecked(True)
        self.side_by_side.setToolTip("After a run, show each scan under its own maps in a cell of its own (napari grid "
                                     "mode; layer names say which scan); untick for one view")
        self.side_by_side.toggled.connect(self._apply_side_by_side)
        self.maps = MapsPanel(viewer, self.TAG)
        self.maps.restore(prefs)
        for table in self.maps.findChildren(QTableWidget):  # the regions table: columns the user can drag
            interactive_columns(table)
        for label in self.maps.findChildren(QLabel):  # e.g. the "cut at" line: wraps, never widens the dock
            label.setWordWrap(True)
        self._entries = []
        self._hidden = None  # layers hidden while side by side (None: grid not ours)
        self.clear_button = QPushButton("Clear results")
        self.clear_button.setToolTip("Remove this widget's map and region layers")
        self.clear_button.clicked.connect(self.clear_results)
        self.export_button = QPushButton("Export…")
        self.export_button.setEnabled(False)
        self.export_button.setToolTip("Write both scans' maps, a figure and a JSON report into a new folder")
        self.export_button.clicked.connect(self._choose_export)
        self.run_button.setToolTip("Preprocess both scans, compare their embeddings and compute the maps in the background")

        form = QFormLayout()
        form.addRow("Scan A", self.image_a)
        form.addRow("Scan B", self.image_b)
        form.addRow(self.model)
        ages = QHBoxLayout()
        ages.addWidget(self.age_a)
        ages.addWidget(QLabel("B"))
        ages.addWidget(self.age_b)
        form.addRow("Age A", ages)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.clear_button)
        bottom.addWidget(self.export_button)
        layout = scrolled_layout(self)  # the dock scrolls on a small screen; the window keeps its size
        layout.addWidget(self.research)
        layout.addLayout(form)
        layout.addWidget(methods_box)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.step_label)
        layout.addWidget(self.results)
        layout.addWidget(self.side_by_side)
        layout.addWidget(self.maps)
        layout.addLayout(bottom)
        layout.addStretch(1)
        self._inputs = [self.image_a, self.image_b, self.model, self.age_a, self.age_b, methods_box, self.export_button]
        self.step_label.setWordWrap(True)  # a long step or export path wraps, never widens the dock
        self.research.setWordWrap(True)

    def chosen_methods(self) -> list[str]:
        return [m for m, box in self.methods.items() if box.isChecked()]

    def _job(self):
        a, b = self.image_a.layer(), self.image_b.layer()
        if a is None or b is None:
            raise BavisError("open two 3D scans and choose them as scan A and scan B")
        if a.name == b.name:
            raise BavisError("scan A and scan B are the same layer; choose two different scans")
        model = self.model.model()
        if model is None:
            raise BavisError("choose a Siamese model: the bundled demo-siamese or Load checkpoint…")
        snap_a, snap_b = snapshot(a), snapshot(b)
        names = (a.name, b.name)
        self._pending = (names, _layers.scan_geometry(snap_a), _layers.scan_geometry(snap_b))
        self._run_layers = [(a.name, a), (b.name, b)]
        return "napari_bavis.napari._jobs:compare_snapshots", {
            "snapshot_a": snap_a, "snapshot_b": snap_b, "model": model, "methods": tuple(self.chosen_methods()),
            "device": self.model.device.currentText(), "age_a": _age(self.age_a), "age_b": _age(self.age_b)}

    def _result_stages(self, comparison):
        names, geo_a, geo_b = self._pending
        sides = (
            (names[0], comparison.scan_a, geo_a, comparison.maps_a),
            (names[1], comparison.scan_b, geo_b, comparison.maps_b),
        )
        wanted = {_layers.map_layer_name(n, m, comparison.card.name) for n, _, _, maps in sides for m in maps}
        entries, pending = [], {}

        def start() -> None:
            for layer in _layers.result_layers(self._viewer, self.TAG, "map"):
                if layer.name not in wanted:
                    self._viewer.layers.remove(layer)
            self.maps.clear()
            self.comparison, self._names = comparison, names
            self.results.setPlainText(comparison_text(comparison, names))
            self.model.show_used_device(comparison.device)
            for note in comparison.notes:
                _notify.show_warning(note)

        def make_map(key, scan_name, geometry, method, values) -> None:
            name = _layers.map_layer_name(scan_name, method, comparison.card.name)
            kwargs = _layers.map_layer_kwargs(geometry, name, self.maps.cutoff(values), self.TAG, method)
            if name in self._viewer.layers:  # a re-run: updated in place
                pending[key] = _layers.put_layer(self._viewer, values, kwargs)
            else:  # napari's visual, controls and insertion each in a turn of its own (StagedAdd)
                pending[key] = self._staged_add(_layers.new_layer(values, kwargs))

        def build(key, part: str) -> None:
            if isinstance(pending[key], StagedAdd):
                getattr(pending[key], part)()

        def add_map(key, scan_name, scan, geometry, method, values) -> None:
            layer = pending.pop(key)
            if isinstance(layer, StagedAdd):
                layer = layer.insert()
            entries.append({"layer": layer, "values": values, "affine": scan.display_affine,
                            "geometry": geometry, "method": method, "scan": scan_name})

        def finish() -> None:
            self.maps.set_maps(entries)
            self._entries = entries
            self._apply_side_by_side()
            self.export_button.setEnabled(True)

        yield start
        for scan_name, scan, geometry, maps in sides:
            for method, values in maps.items():
                key = (scan_name, method)
                yield lambda a=(key, scan_name, geometry, method, values): make_map(*a)
                yield lambda k=key: build(k, "build_visual")
                yield lambda k=key: build(k, "build_controls")
                yield lambda k=key: build(k, "mount_controls")
                yield lambda a=(key, scan_name, scan, geometry, method, values): add_map(*a)
        yield finish

    def _apply_side_by_side(self, *_) -> None:
        """Grid mode with scan A (and its maps) left and scan B right, or back to one view."""
        if self.side_by_side.isChecked() and self.comparison is not None:
            hidden = _side_by_side.arrange(self._viewer, _side_by_side.blocks(self._viewer, self._run_layers,
                                                                              self._entries))
            if hidden is not None:
                self._hidden = (self._hidden or []) + hidden
                return
        if self._hidden is not None:
            _side_by_side.release(self._viewer, self._hidden)
            self._hidden = None

    def clear_results(self) -> None:
        _layers.remove_result_layers(self._viewer, self.TAG)
        self._entries = []
        self.maps.clear()
        self.comparison = None
        self.results.clear()
        self.export_button.setEnabled(False)
        self._apply_side_by_side()

    def _result(self):
        return self.comparison

    def _export_name(self) -> str:
        return f"{self._names[0]} vs {self._names[1]}"

    def _exporter(self, kwargs: dict):
        return pipeline.export_comparison


def _age_box(tooltip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(-1.0, 120.0)
    box.setDecimals(1)
    box.setSpecialValueText("not given")
    box.setValue(-1.0)
    box.setSuffix(" y")
    box.setToolTip(tooltip)
    return box


def _age(box: QDoubleSpinBox):
    return None if box.value() < 0 else float(box.value())


def comparison_text(comparison, names) -> str:
    sim, card = comparison.similarity, comparison.card
    lines = [
        f"Scans: {names[0]} vs {names[1]} · model {card.name}",
        f"Similarity (cosine): {sim.cosine:.3f}",
        f"Distance: {sim.distance:.3f}  (0 = identical embeddings, 2 = opposite)",
    ]
    for name, nearest, scores in (
        (names[0], sim.nearest_reference_a, getattr(sim, "reference_similarities_a", None)),
        (names[1], sim.nearest_reference_b, getattr(sim, "reference_similarities_b", None)),
    ):
        if nearest is None:
            lines.append(f"{name}: the model card has no reference embeddings")
        else:
            detail = ", ".join(f"{k} {v:.2f}" for k, v in (scores or {}).items())
            lines.append(f"{name}: nearest reference {nearest}" + (f" ({detail})" if detail else ""))
    for note in unique_notes(comparison.notes, getattr(comparison, "warnings", None)):  # each once: files, QC, ages
        lines.append(f"⚠ {note}")
    lines.append(f"Model: {card.name} {card.version} ({card.architecture}) on {comparison.device}")
    lines.append(RESEARCH_ONLY)
    return "\n".join(lines)
