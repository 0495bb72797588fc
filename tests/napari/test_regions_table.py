"""The regions table shows each region as a reader uses it and follows the list it is given."""

from napari_bavis.napari import _regions_table
from napari_bavis.regions import Region


def _region(label, atlas=None, overlap=None):
    return Region(label=label, volume_mm3=1234.4, peak_value=0.8765, peak_ras_mm=(-20.4, 10.6, 3.0),
                  centroid_ras_mm=(-18.0, 12.49, 5.5), share_of_map=0.1234, atlas_name=atlas, atlas_overlap=overlap)


def test_a_row_reads_rounded_and_names_its_atlas_region_with_its_overlap():
    assert _regions_table.row_cells(_region(2, "Left Hippocampus", 0.617)) == [
        "2", "1234", "0.88", "-20, 11, 3", "-18, 12, 6", "12.3", "Left Hippocampus (62 %)"]
    assert _regions_table.row_cells(_region(1))[-1] == ""  # no atlas: an empty cell, not "None"


def test_the_table_follows_the_regions_it_is_given(qtbot):
    table = _regions_table.regions_table()
    qtbot.addWidget(table)
    assert [table.horizontalHeaderItem(i).text() for i in range(table.columnCount())] == list(_regions_table.COLUMNS)
    _regions_table.fill(table, [_region(1), _region(2, "Insula", 0.5)])
    assert table.rowCount() == 2 and table.item(1, 6).text() == "Insula (50 %)"
    _regions_table.fill(table, [_region(3)])
    assert table.rowCount() == 1 and table.item(0, 0).text() == "3"
    _regions_table.fill(table, [])
    assert table.rowCount() == 0
