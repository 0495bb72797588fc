"""The maps panel's table of activated regions: its columns and how one region reads in a row.

Why a file of its own: the panel (``_maps_panel``) decides *which* regions are listed (the shown
map, its cut, the minimum size); this only lays them out, read-only, one row per region, biggest
share of the map first as ``regions.activated_regions`` orders them.
"""

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

COLUMNS = ("#", "volume mm³", "peak", "peak RAS mm", "centroid RAS mm", "share %", "atlas region")


def regions_table() -> QTableWidget:
    """An empty table: read-only, one row selected at a time, columns sized to their contents."""
    table = QTableWidget(0, len(COLUMNS))
    table.setHorizontalHeaderLabels(list(COLUMNS))
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.verticalHeader().setVisible(False)
    table.setMinimumHeight(120)
    table.setToolTip("Connected regions above the threshold, biggest share of the map first; click a row to go there")
    return table


def row_cells(region) -> list[str]:
    """One region as the table shows it (volumes and coordinates rounded to what a reader uses)."""
    return [
        str(region.label),
        f"{region.volume_mm3:.0f}",
        f"{region.peak_value:.2f}",
        ", ".join(f"{v:.0f}" for v in region.peak_ras_mm),
        ", ".join(f"{v:.0f}" for v in region.centroid_ras_mm),
        f"{100 * region.share_of_map:.1f}",
        "" if region.atlas_name is None else f"{region.atlas_name} ({100 * (region.atlas_overlap or 0):.0f} %)",
    ]


def fill(table: QTableWidget, regions) -> None:
    """The table's rows become ``regions`` (none: an empty table)."""
    table.setRowCount(len(regions))
    for row, region in enumerate(regions):
        for col, text in enumerate(row_cells(region)):
            item = QTableWidgetItem(text)
            item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
            table.setItem(row, col, item)
