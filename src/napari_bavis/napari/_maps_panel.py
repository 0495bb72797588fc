"""The maps panel of a result: which map is shown, threshold, the regions of that map (laid out by
``_regions_table``), its outlines.

How the viewer shows the chosen map (one at a time, colour bar and legend, a selection left alone)
lives in ``_map_view``.
"""

import logging

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QVBoxLayout

from ..regions import DEFAULT_MODE, DEFAULT_THRESHOLD, activated_regions, threshold_value
from ..methods import figure_method
from . import _layers, _map_view, _orientation_letters, _regions_table
from ._display import camera_of
from ._staged_add import no_repaint
from ._controls import THRESHOLD_MODES

log = logging.getLogger(__name__)


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
        self._cuts: dict = {}  # (id of a map's values, threshold, mode) -> (values, cut); see cutoff()
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
        self.regions_of = QComboBox()  # the map selector: shows one map, names it on the canvas, lists its regions
        self.regions_of.setToolTip("The map shown on the scan (the others are hidden, not deleted; the layer list's "
                                   "eye still shows any of them), named with its cut on the canvas; the table lists "
                                   "its activated regions")
        self.outlines = QCheckBox("Region outlines")
        self.outlines.setToolTip("Outline the activated regions over the map (a Labels layer drawn as contours, made "
                                 "when first shown); clicking a table row shows them too")
        self._labels = None  # (layer name, labels, entry) of the selected map's regions
        self._watched = None  # the outlines layer whose eye the checkbox follows
        self.table = _regions_table.regions_table()
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
        form.addRow("Show map", self.regions_of)
        form.addRow("", self.outlines)
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
        self.regions_of.currentIndexChanged.connect(self._on_choose)
        self.outlines.toggled.connect(lambda *_: self._sync_outlines())
        self.table.cellClicked.connect(self.go_to_region)
        viewer.layers.events.removed.connect(lambda *_: QTimer.singleShot(0, self._prune))
        viewer.layers.selection.events.active.connect(self._follow_active)
        _orientation_letters.attach(viewer)  # L/R, A/P, S/I at the canvas edges (once per viewer)

    def _prune(self) -> None:
        """A map layer the user deleted leaves "Show map", the table, the outlines and the legend."""
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
        elif selected not in live:
            _map_view.show_only(live, self.selected_entry())
        self._update_legend()
        self.update_regions()

    def _on_choose(self, *_) -> None:
        """The selector: its map becomes the one visible, with its legend and its regions."""
        entry = self.selected_entry()
        if entry is not None and entry["layer"] in self._viewer.layers:
            _map_view.show_only(self._live_entries(), entry)
            self._viewer.layers.selection.active = entry["layer"]  # layer list and selector agree
        self._update_legend()
        self.update_regions()

    def _follow_active(self, event=None) -> None:
        """A map selected in the layer list becomes the selector's choice (its visibility is the user's)."""
        try:
            active = self._viewer.layers.selection.active
            index = next((i for i, e in enumerate(self._entries) if _map_view.same(e["layer"], active)), -1)
            if index < 0 or index == self.regions_of.currentIndex():
                return
            self.regions_of.blockSignals(True)
            self.regions_of.setCurrentIndex(index)
            self.regions_of.blockSignals(False)
        except RuntimeError:  # the panel's Qt object is gone (widget closed)
            return
        self._update_legend()
        self.update_regions()

    def _update_legend(self, part: str = "both") -> None:
        """The shown map's colour bar and legend text (``part``: "bar" or "text" alone, one turn each)."""
        entry = self.selected_entry()
        live = self._live_entries()
        if entry is None or entry not in live:
            _map_view.hide_legend(self._viewer, live)
            return
        if part in ("both", "bar"):
            _map_view.show_colour_bar(self._viewer, entry)
        if part in ("both", "text"):
            text = _map_view.legend_text(entry, self.cutoff(entry["values"]), self.threshold.value(), self.mode_key(),
                                         with_scan=len({e["scan"] for e in live}) > 1)
            _map_view.show_legend_text(self._viewer, text)

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
        """The map value ``values`` is cut at, remembered per map and threshold: a top-k % cut of a
        1 mm map is a percentile (tens of ms), asked for by the colormap, the legend and the regions."""
        key = (id(values), float(self.threshold.value()), self.mode_key())
        held = self._cuts.get(key)
        if held is None or held[0] is not values:  # (the array is kept: an id is reused once freed)
            held = self._cuts[key] = (values, float(threshold_value(values, key[1], key[2])))
        return held[1]

    def remember_cut(self, values: np.ndarray, threshold: float, mode: str, cut: float) -> None:
        """A cut computed elsewhere (the worker cuts each map at the widget's threshold)."""
        self._cuts[(id(values), float(threshold), mode)] = (values, float(cut))

    def apply_threshold(self, *_) -> None:
        """Swap each map layer's colormap for one transparent up to its cutoff; regions follow."""
        self._recolour()
        self._update_legend()
        if self._entries:
            self._region_timer.start()

    def _recolour(self) -> None:
        cutoffs, live = [], self._live_entries()
        with no_repaint(self._viewer, when=not any(e["layer"].visible for e in live)):  # all hidden: no pixel changes
            for entry in live:
                cut = self.cutoff(entry["values"])
                entry["layer"].colormap = _layers.threshold_colormap(cut)
                cutoffs.append(f"{_layers.method_title(entry['method'])} {cut:.3f}")
        self.cutoff_label.setText("cut at: " + ", ".join(cutoffs) if cutoffs else "")

    # --- maps --------------------------------------------------------------------------------
    def set_maps(self, entries: list[dict]) -> None:
        """entries: dicts with layer, values, affine (display grid -> RAS), geometry, method, scan."""
        for step in self.set_maps_steps(entries):
            step()

    def set_maps_steps(self, entries: list[dict]) -> list:
        """``set_maps`` in pieces, one event-loop turn each (the analysis widget chains them, so the
        viewer answers in between, issue 13): the map list, the layer controls on the shown map, the
        colormaps, its colour bar's visual made while it is hidden, the map shown, the bar shown (its
        first paint alone: ~130 ms on software GL), the legend text, the regions."""
        def list_maps() -> None:
            self._entries = entries
            live_ids = {id(e["values"]) for e in entries}
            self._cuts = {k: v for k, v in self._cuts.items() if k[0] in live_ids}
            self.regions_of.blockSignals(True)
            self.regions_of.clear()
            for entry in entries:
                self.regions_of.addItem(entry["layer"].name)
            best = figure_method([e["method"] for e in entries])  # the map the figures show
            self.regions_of.setCurrentIndex(next((i for i, e in enumerate(entries) if e["method"] == best), 0))
            self.regions_of.blockSignals(False)

        def on_selected(act) -> None:
            entry = self.selected_entry()
            if entry is not None and self._entries is entries:
                act(entry)

        def select(entry) -> None:  # the layer controls act on the shown map
            self._viewer.layers.selection.active = entry["layer"]

        return [list_maps, lambda: on_selected(select), self._recolour,
                lambda: on_selected(lambda e: _map_view.prepare_colour_bar(self._viewer, e)),
                lambda: on_selected(lambda e: _map_view.show_only(entries, e)),
                lambda: self._update_legend("bar"), lambda: self._update_legend("text"),
                lambda: (self._region_timer.stop(), self.update_regions())]

    def clear(self) -> None:
        _map_view.hide_legend(self._viewer, self._live_entries())
        self._entries = []
        self._cuts = {}
        self._regions = []
        self._labels = None
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
        if entry is None:
            self._regions, self._labels = [], None
            self.table.setRowCount(0)
            self._sync_outlines()
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
        self._labels = (f"{entry['scan']} · regions", labels, entry) if len(table) else None
        self._sync_outlines()
        _regions_table.fill(self.table, table)

    def _sync_outlines(self) -> None:
        """The outlines layer follows the selected map's regions, is made only once it is to be shown
        (napari takes ~1.1 s of GUI time to make one at 1 mm), goes when there are no regions, and
        never takes the layer list's selection."""
        old = _layers.result_layers(self._viewer, self._tag, "regions")
        name = self._labels[0] if self._labels is not None else None
        for layer in old:
            if layer.name != name:
                self._viewer.layers.remove(layer)
        wanted = self.outlines.isChecked()
        if name is None or (not wanted and name not in self._viewer.layers):
            return
        _, labels, entry = self._labels
        if labels.dtype.itemsize > 2 and labels.size and int(labels.max()) < 65536:
            labels = labels.astype(np.uint8 if int(labels.max()) < 256 else np.uint16)  # napari draws these faster
        kwargs = _layers.regions_layer_kwargs(entry["geometry"], name, self._tag)
        kwargs["visible"] = wanted
        kwargs["opacity"] = _map_view.OUTLINE_OPACITY
        kwargs["metadata"]["bavis_method"] = entry["method"]
        with _map_view.keep_selection(self._viewer):
            layer = _layers.put_layer(self._viewer, labels, kwargs, "labels")
        if layer.contour != _map_view.OUTLINE_CONTOUR:
            layer.contour = _map_view.OUTLINE_CONTOUR
            layer.colormap = _map_view.outline_colormap()
        layer.visible = wanted
        layer.editable = False  # outlines to read, not to paint
        if self._watched is not layer:
            self._watched = layer
            layer.events.visible.connect(self._outlines_eye)

    def _outlines_eye(self, event=None) -> None:
        """The layer list's eye on the outlines layer and the checkbox agree."""
        layer = self._watched
        try:
            if layer is not None and layer in self._viewer.layers and layer.visible != self.outlines.isChecked():
                self.outlines.blockSignals(True)
                self.outlines.setChecked(layer.visible)
                self.outlines.blockSignals(False)
        except RuntimeError:  # the panel's Qt object is gone (widget closed)
            pass

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
        if not self.outlines.isChecked():
            self.outlines.setChecked(True)  # makes the outlines layer if need be, selection untouched
        for layer in _layers.result_layers(viewer, self._tag, "regions"):
            layer.visible = True
            layer.selected_label = self._regions[row].label
            layer.show_selected_label = False
