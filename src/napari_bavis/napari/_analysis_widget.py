"""The analysis dock widget: a scan layer -> pipeline.analyze in a worker process -> brain age and
thresholded map layers on the scan. All analysis happens in napari_bavis.pipeline; this module
only gathers inputs, runs the call off the GUI's interpreter and shows what comes back.

Its parts: ``_controls`` (layer combo, model picker, card text), ``_run_widget`` (Run / Cancel,
progress, the worker, export; shared with the compare widget), ``_maps_panel`` (threshold, regions).

No ``from __future__ import annotations``: napari reads the ``viewer`` annotation at run time.
"""

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
)

from .. import pipeline, settings
from ..errors import BavisError
from ..summary import brain_age_text, model_label, unique_notes
from . import _layers, _notify
from ._controls import (  # noqa: F401  (names the compare widget and the tests read from here)
    CPU_WARNING, LOAD_CHECKPOINT, RESEARCH_ONLY, THRESHOLD_MODES, LayerCombo, ModelPicker, snapshot, card_text,
)
from ._layout import ResultText, interactive_columns, scrolled_layout
from ._maps_panel import MapsPanel
from ._staged_add import StagedAdd
from ._run_widget import RunWidget, _RunWidget, export_folder  # noqa: F401

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)



class AnalysisWidget(RunWidget):
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

        self.results = ResultText("Results appear here after a run.",
                                  "The prediction and its context; select and copy (Ctrl+C) or use Copy")
        copy = QPushButton("Copy")
        copy.setToolTip("Copy the results text to the clipboard")
        copy.clicked.connect(lambda: QApplication.clipboard().setText(self.results.toPlainText()))
        self.qc_mask = QCheckBox("Brain mask layer")
        self.qc_mask.setToolTip("Outline the brain mask used by preprocessing on the scan")
        self.qc_registration = QCheckBox("Check registration")
        self.qc_registration.setToolTip("A grey checkerboard of the registered scan and the template on the model grid: "
                                        "edges that run on across the tile borders mean the registration worked")
        self.qc_mask.toggled.connect(self._update_qc)
        self.qc_registration.toggled.connect(self._update_qc)
        self.maps = MapsPanel(viewer, self.TAG)
        self.maps.restore(prefs)
        for table in self.maps.findChildren(QTableWidget):  # the regions table: columns the user can drag
            interactive_columns(table)
        for label in self.maps.findChildren(QLabel):  # e.g. the "cut at" line: wraps, never widens the dock
            label.setWordWrap(True)
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
        layout = scrolled_layout(self)  # the dock scrolls on a small screen; the window keeps its size
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
        self.step_label.setWordWrap(True)  # a long step or export path wraps, never widens the dock
        self.research.setWordWrap(True)
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
        snap = snapshot(layer)
        self._pending = (layer.name, _layers.scan_geometry(snap))
        self._run_layers = [(layer.name, layer)]
        age = self.age.value()
        sex = self.sex.currentText()
        return "napari_bavis.napari._jobs:analyze_snapshot", {
            "snapshot": snap,
            "model": model,
            "chronological_age": None if age < 0 else float(age),
            "sex": None if sex == "not given" else sex,
            "methods": tuple(self.chosen_methods()),
            "device": self.model.device.currentText(),
            "regions": (float(self.maps.threshold.value()), self.maps.mode_key(), float(self.maps.min_size.value())),
        }

    # --- results -----------------------------------------------------------------------------
    def _result_stages(self, analysis):
        """One short piece per event-loop turn (the viewer answers in between, issue 13): the text,
        the readout, then per map its layer object, its vispy visual, its layer controls and its
        insertion, a turn each (``StagedAdd``; or one update in place on a re-run), QC only when
        asked for, then the maps panel."""
        scan_name, geometry = self._pending
        names = {_layers.map_layer_name(scan_name, m, analysis.card.name) for m in analysis.maps}
        entries, pending = [], {}

        def start() -> None:
            for layer in _layers.result_layers(self._viewer, self.TAG, "map"):
                if layer.name not in names:
                    self._viewer.layers.remove(layer)
            _layers.remove_result_layers(self._viewer, self.TAG, "qc")
            self.maps.clear()
            self.analysis, self._geometry, self._scan_name = analysis, geometry, scan_name
            self.results.setPlainText(result_text(analysis))
            self.model.show_used_device(analysis.device)
            for note in analysis.notes:
                _notify.show_warning(note)

        def cut_of(method, values) -> float:
            pre = getattr(analysis, "cutoffs", None)  # computed by the worker for the threshold it was given
            if pre is not None and pre[:2] == (float(self.maps.threshold.value()), self.maps.mode_key()):
                if method in pre[2]:
                    self.maps.remember_cut(values, pre[0], pre[1], pre[2][method])
            return self.maps.cutoff(values)

        def make_map(method, values) -> None:
            name = _layers.map_layer_name(scan_name, method, analysis.card.name)
            kwargs = _layers.map_layer_kwargs(geometry, name, cut_of(method, values), self.TAG, method)
            if name in self._viewer.layers:  # a re-run: updated in place (ms), or replaced
                pending[method] = _layers.put_layer(self._viewer, values, kwargs)
            else:  # hidden: napari then neither slices nor uploads it; the maps panel shows one map
                layer = _layers.new_layer(values, {**kwargs, "visible": False})
                pending[method] = self._staged_add(layer)  # napari's parts in turns of their own

        def build(method, part: str) -> None:
            if isinstance(pending[method], StagedAdd):
                getattr(pending[method], part)()

        def show_map(method, values) -> None:
            layer = pending.pop(method)
            if isinstance(layer, StagedAdd):
                layer = layer.insert()
            entries.append({"layer": layer, "values": values, "affine": analysis.scan.display_affine,
                            "geometry": geometry, "method": method, "scan": scan_name,
                            "name_regions": analysis.name_regions,
                            "first_regions": getattr(analysis, "first_regions", None)})

        def finish() -> None:
            if entries and not any(entry["layer"].visible for entry in entries):
                entries[0]["layer"].visible = True
            self.export_button.setEnabled(True)

        yield start
        yield lambda: self.readout.show_analysis(analysis)
        for method, values in analysis.maps.items():
            yield lambda m=method, v=values: make_map(m, v)
            yield lambda m=method: build(m, "build_visual")
            yield lambda m=method: build(m, "build_controls")
            yield lambda m=method: build(m, "mount_controls")
            yield lambda m=method, v=values: show_map(m, v)
        if self.qc_mask.isChecked() or self.qc_registration.isChecked():
            yield self._update_qc
        yield from self.maps.set_maps_steps(entries)  # shows the preferred map (the others stay hidden)
        yield finish

    def clear_results(self) -> None:
        _layers.remove_result_layers(self._viewer, self.TAG)
        self.maps.clear()
        self.readout.clear()
        self.analysis = None
        self.results.clear()
        self.export_button.setEnabled(False)

    def _update_qc(self, *_) -> None:
        """Brain mask as an outline on the scan; registration as a grey checkerboard (scan ▪ template)."""
        _layers.remove_result_layers(self._viewer, self.TAG, "qc")
        if self.analysis is None:
            return
        wanted = set()
        if self.qc_mask.isChecked():
            wanted.add("brain mask")
        if self.qc_registration.isChecked():
            wanted.add(_layers.REGISTRATION_CHECK)
        if not wanted:
            return
        data = _layers.qc_layer_data(self.analysis.qc, self._scan_name, self.TAG, keys=wanted)
        for key in (_layers.REGISTRATION_CHECK, "brain mask"):  # the outline on top
            if key in data:
                layer_data, kwargs, kind = data[key]
                layer = _layers.put_layer(self._viewer, layer_data, kwargs, kind)
                if kind == "labels":
                    layer.contour = _layers.MASK_CONTOUR
        if not wanted & set(data):
            _notify.show_warning("napari-bavis: this preprocessing produced no QC images")

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
