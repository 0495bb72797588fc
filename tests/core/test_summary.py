"""One wording of a result (summary): brain age ± uncertainty, the model used, each warning once —
and export_analysis puts them in report.json and the figure's title."""

import json

import nibabel as nib
import numpy as np
import pytest

from napari_bavis import export, models, pipeline, summary
from napari_bavis.io import load_scan
from napari_bavis.models.inference import AgePrediction


def test_unique_notes_keeps_order_and_drops_repeats_and_blanks():
    assert summary.unique_notes(["b", None, "a"], ["a", "", "c"], None, ["b  "]) == ["b", "a", "c"]


def test_brain_age_text_with_and_without_an_uncertainty():
    assert summary.brain_age_text(43.24, 1.06) == "43.2 ± 1.1 y"
    assert summary.brain_age_text(43.24, None) == "43.2 y"
    assert summary.brain_age_text(43.24, float("nan"), "years") == "43.2 years"
    assert summary.brain_age_text(43.24, np.float32(0.5)) == "43.2 ± 0.5 y"


def test_model_label_names_the_version_from_a_card_or_a_report():
    card = models.default_card("ba3d", name="ds002748", version="1.0.0")
    assert summary.model_label(card) == "ds002748 1.0.0"
    assert summary.model_label(pipeline.card_summary(card)) == "ds002748 1.0.0"
    assert summary.model_label({}) == "unknown model"


@pytest.fixture
def handmade(tmp_path):
    """An Analysis as pipeline.analyze returns it, without running a model."""
    data = np.zeros((20, 24, 18), np.float32)
    data[4:16, 4:20, 3:15] = 100.0
    nib.save(nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0])), tmp_path / "s.nii.gz")
    scan = load_scan(tmp_path / "s.nii.gz")
    warning = "brain age 61.3 is outside the model's training range 19-55 years: it is extrapolated"
    return pipeline.Analysis(
        scan=scan, card=models.default_card("ba3d", name="real", version="2.0.1"),
        prediction=AgePrediction(brain_age=61.26, uncertainty=1.14, chronological_age=50.0, gap=11.26,
                                 out_of_range_warning=warning),
        maps={}, maps_model={}, qc={}, timings={}, record={}, device="cpu",
        notes=["Registration is weak (correlation with the template 0.66): check the overlay.", warning, warning],
    )


def test_export_puts_uncertainty_and_each_warning_once_in_the_report(handmade, tmp_path, monkeypatch):
    titles = []
    real = export._write_figure
    monkeypatch.setattr(export, "_write_figure", lambda *a, **k: (titles.append(a[5]), real(*a, **k)))
    report = pipeline.export_analysis(handmade, tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["brain_age_uncertainty"] == pytest.approx(1.14)
    assert on_disk["warnings"] == handmade.notes[:2]
    assert on_disk["model"]["name"] == "real" and on_disk["model"]["version"] == "2.0.1"
    assert titles == ["s — brain age 61.3 ± 1.1 y (chronological 50.0 y, gap +11.3 y; no bias correction in the model card)"]
    line = summary.report_line(report)
    assert line.startswith("brain age 61.3 ± 1.1 y; chronological 50.0 y, gap +11.3 y (no bias correction in the model "
                           "card); model real 2.0.1; 2 warnings: ")
    handmade.prediction.uncertainty = None
    assert summary.analysis_title("s", handmade.prediction) == ("s — brain age 61.3 y (chronological 50.0 y, gap +11.3 y; "
                                                                "no bias correction in the model card)")


def test_the_corrected_gap_and_its_method_are_printed_wherever_the_raw_gap_is(handmade, tmp_path, monkeypatch):
    """Figure title, the CLI's per-scan line (analyze, bids, demo) and report.json: raw and corrected gap, and the
    correction's method."""
    handmade.prediction.gap_corrected, handmade.prediction.correction_method = -2.04, "regression-on-age"
    titles = []
    real = export._write_figure
    monkeypatch.setattr(export, "_write_figure", lambda *a, **k: (titles.append(a[5]), real(*a, **k)))
    report = pipeline.export_analysis(handmade, tmp_path / "out")
    assert report["brain_age_gap_corrected"] == pytest.approx(-2.04) and report["correction_method"] == "regression-on-age"
    assert titles[0].endswith("(chronological 50.0 y, gap +11.3 y; bias-corrected -2.0 y, regression-on-age method)")
    assert "gap +11.3 y (bias-corrected -2.0 y, regression-on-age method); model real" in summary.report_line(report)
    # no chronological age: neither gap is printed, nor a reason for the missing correction
    line = summary.report_line({**report, "chronological_age": None, "brain_age_gap": None,
                                "brain_age_gap_corrected": None})
    assert "gap" not in line and "correction" not in line
