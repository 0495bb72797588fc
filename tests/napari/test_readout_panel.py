"""The analysis dock's region-importance and faithfulness panel, fed a result with known values."""

from types import SimpleNamespace

import numpy as np
import pytest

from napari_bavis.readout_figure import faithfulness_figure, importance_lines


def _faith(deletion, insertion):
    fractions = list(np.linspace(0, 1, 11))
    return {"deletion_auc": deletion, "insertion_auc": insertion, "random_deletion_auc": 60.0,
            "random_insertion_auc": 61.0, "fractions": fractions,
            "deletion_curve": list(np.linspace(70, 50, 11)), "insertion_curve": list(np.linspace(50, 70, 11)),
            "random_deletion_curve": list(np.linspace(70, 50, 11)), "random_insertion_curve": list(np.linspace(50, 70, 11))}


@pytest.fixture
def result():
    rows = [{"region": "Lateral Ventricle", "hemisphere": "left", "atlas": "harvard_oxford", "delta_years": -4.1,
             "volume_mm3": 12000.0},
            {"region": "Brain Stem", "hemisphere": "midline", "atlas": "harvard_oxford", "delta_years": 1.5,
             "volume_mm3": 30000.0}]
    return SimpleNamespace(region_importance=rows, faithfulness={"gradcam++": _faith(55.0, 66.0), "smoe": _faith(62.0, 59.0)},
                           atlas="harvard_oxford",
                           record={"explanation_checks": {"region_importance": {"seconds": 1.0}}})


def test_panel_shows_importance_in_years_and_each_maps_aucs(qtbot, result):
    from napari_bavis.napari._readout_panel import ReadoutPanel

    panel = ReadoutPanel()
    qtbot.addWidget(panel)
    panel.show_analysis(result)
    assert panel.importance.rowCount() == 2
    assert [panel.importance.item(0, c).text() for c in range(4)] == ["Lateral Ventricle", "left", "-4.10", "12.0"]
    assert panel.faithfulness.rowCount() == 2
    assert panel.faithfulness.item(0, 0).text() == "Grad-CAM++"
    assert [panel.faithfulness.item(0, c).text() for c in range(1, 5)] == ["55.0", "60.0", "66.0", "61.0"]
    assert not panel.figure.pixmap().isNull()
    assert "harvard_oxford" in panel.note.text()
    panel.clear()
    assert panel.importance.rowCount() == 0 and panel.faithfulness.rowCount() == 0


def test_skipped_checks_are_said_not_hidden(qtbot, result):
    from napari_bavis.napari._readout_panel import ReadoutPanel

    result.region_importance, result.faithfulness = None, {}
    result.record = {"explanation_checks": {"region_importance": {"skipped": "region importance switched off"}}}
    panel = ReadoutPanel()
    qtbot.addWidget(panel)
    panel.show_analysis(result)
    assert panel.importance.rowCount() == 0 and "switched off" in panel.note.text()


def test_figure_and_lines_without_qt(result):
    png = faithfulness_figure(result.faithfulness)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert importance_lines(result.region_importance) == ["Left Lateral Ventricle: -4.10 y", "Brain Stem: +1.50 y"]
