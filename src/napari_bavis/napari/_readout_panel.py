"""The analysis dock's explanation checks: region importance in years (a sorted table) and each
map's faithfulness (AUC table and the deletion/insertion curves as a picture).

A separate module so that the analysis widget only creates the panel and hands it each result.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtGui import QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from . import _layers
from ._layout import ScaledPicture, interactive_columns


def _table(headers, tip: str) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    interactive_columns(table)  # fitted to the contents, then the user's to drag
    table.verticalHeader().setVisible(False)
    table.setToolTip(tip)
    return table


def _fill(table: QTableWidget, rows: list[list[str]]) -> None:
    table.setRowCount(len(rows))
    for r, cells in enumerate(rows):
        for c, text in enumerate(cells):
            item = QTableWidgetItem(text)
            if c:
                item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
            table.setItem(r, c, item)


class ReadoutPanel(QGroupBox):
    """Region importance and faithfulness of the last analysis (empty until a run gives them)."""

    ROWS = 15

    def __init__(self):
        super().__init__("Region importance and faithfulness")
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.importance = _table(["region", "side", "Δ brain age (y)", "volume cm³"],
                                 "Brain age with the region replaced by the template brain, minus the scan's "
                                 "brain age; largest change first")
        self.importance.setMinimumHeight(120)
        self.faithfulness = _table(["map", "deletion AUC", "random", "insertion AUC", "random"],
                                   "Mean brain age while the map's top voxels are removed (deletion: lower than "
                                   "random is faithful) or put back (insertion: higher than random is faithful)")
        self.figure = ScaledPicture()  # the curves at the dock's width
        self.figure.setToolTip("Deletion and insertion curves of each map (solid) and of a random ordering (dashed)")
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addWidget(self.importance)
        layout.addWidget(self.faithfulness)
        layout.addWidget(self.figure)

    def clear(self) -> None:
        self.note.setText("")
        self.importance.setRowCount(0)
        self.faithfulness.setRowCount(0)
        self.figure.clear()

    def show_analysis(self, analysis) -> None:
        self.clear()
        rows = analysis.region_importance or []
        _fill(self.importance, [[r["region"], r["hemisphere"], f"{r['delta_years']:+.2f}", f"{r['volume_mm3'] / 1000:.1f}"]
                                for r in rows[:self.ROWS]])
        faith = analysis.faithfulness or {}
        _fill(self.faithfulness, [[_layers.method_title(m), f"{f['deletion_auc']:.1f}", f"{f['random_deletion_auc']:.1f}",
                                   f"{f['insertion_auc']:.1f}", f"{f['random_insertion_auc']:.1f}"] for m, f in faith.items()])
        checks = (analysis.record or {}).get("explanation_checks", {})
        skipped = [v["skipped"] for v in (checks.get("region_importance"), checks.get("faithfulness"))
                   if isinstance(v, dict) and v.get("skipped")]
        atlas = getattr(analysis, "atlas", None)
        self.note.setText("; ".join([f"atlas: {atlas}"] * bool(atlas) + skipped))
        if faith:
            from ..readout_figure import faithfulness_figure

            pixmap = QPixmap()  # drawn by the worker process when it can (matplotlib takes seconds of GUI time)
            png = getattr(analysis, "faithfulness_png", None) or faithfulness_figure(faith, _layers.method_title, width_in=4.6)
            pixmap.loadFromData(png)
            self.figure.set_picture(pixmap)
