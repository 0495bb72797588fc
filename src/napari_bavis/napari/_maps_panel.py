"""The maps panel of a result: threshold, the regions table of the selected map, its layer."""

import logging
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..regions import DEFAULT_MODE, DEFAULT_THRESHOLD, activated_regions, threshold_value
from ..methods import PREFERRED_METHOD
from . import _layers
from ._display import camera_of
from ._controls import THRESHOLD_MODES

if TYPE_CHECKING:
    pass

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
        preferred = next((i for i, e in enumerate(entries) if e["method"] == PREFERRED_METHOD), 0)
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
