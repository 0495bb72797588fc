"""The method table is the one source of method names and titles; the report figure reads it and
carries orientation letters (a printed figure must be readable without its caption)."""

import io

import numpy as np
import pytest

from napari_bavis import explain, figure, methods, pipeline, settings
from napari_bavis.explain import engine


def test_every_reader_of_method_names_takes_them_from_the_table():
    assert explain.METHODS == pipeline.ALL_METHODS == methods.ALL_METHODS
    assert tuple(settings.DEFAULTS["methods"]) == pipeline.DEFAULT_METHODS == methods.DEFAULT_METHODS
    assert set(methods.PRODUCT_METHODS) == {m for m in methods.ALL_METHODS if "*" in m}
    # every row the engine can compute: a formula of its own, a product of two maps, or a smoothed formula
    for m in methods.TABLE:
        if m.factors:
            assert m.name == "*".join(m.factors) and set(m.factors) <= set(methods.ALL_METHODS)
        elif m.smoothed:
            assert m.smoothed in engine.CAM_FORMULAS
        else:
            assert m.name in engine.CAM_FORMULAS or m.name == methods.SMOE
    assert methods.title("smoe*gradcam++") == "SMOE×Grad-CAM++" and methods.title("unknown") == "unknown"
    assert methods.file_stem("smoe*gradcam++") == "smoexgradcampp"
    assert methods.figure_method({"smoe": 1, "gradcam++": 1}) == "gradcam++"
    assert methods.figure_method({}) is None
    assert "smooth-gradcam++" not in methods.SIAMESE_METHODS


def _texts(monkeypatch):
    """Capture every text matplotlib's Axes.text / Figure.suptitle / colour-bar label gets."""
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    seen = []
    for cls, name in ((Axes, "text"), (Figure, "suptitle"), (Axes, "set_ylabel")):
        original = getattr(cls, name)

        def spy(self, *args, _original=original, **kwargs):
            seen.append(" ".join(str(a) for a in args if isinstance(a, str)))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, spy)
    return seen


@pytest.mark.parametrize("radiological", [False, True])
def test_figure_has_orientation_letters_and_flips_them_for_radiological(monkeypatch, radiological):
    seen = _texts(monkeypatch)
    scan = np.random.default_rng(0).random((20, 24, 22)).astype(np.float32)
    overlay = np.zeros_like(scan)
    overlay[8:12, 10:14, 4:8] = 1.0  # on the patient's left (low R index)
    png = figure.three_plane_figure(scan, (1, 1, 1), overlay, cutoff=0.5, title="t",
                                    overlay_label=methods.title("smoe*gradcam++"), radiological=radiological)
    from PIL import Image

    assert Image.open(io.BytesIO(png)).size[0] > 600
    letters = [t for t in seen if t in {"L", "R", "A", "P", "S", "I"}]
    assert sorted(letters) == sorted(["L", "R", "P", "A"] + ["L", "R", "I", "S"] + ["P", "A", "I", "S"])
    # the axial plane's first letter is its left edge: L in neurological order, R in radiological
    assert letters[0] == ("R" if radiological else "L")
    assert any("SMOE×Grad-CAM++" in t for t in seen)


def test_report_pdf_says_why_a_corrected_gap_is_missing_and_uses_method_titles():
    from napari_bavis import report_pdf

    no_age = report_pdf._results({"brain_age": 30.0, "chronological_age": None, "brain_age_gap_corrected": None})
    assert no_age[-1].endswith("(needs the chronological age)")
    no_correction = report_pdf._results({"brain_age": 30.0, "chronological_age": 40.0, "brain_age_gap": -10.0,
                                         "brain_age_gap_corrected": None})
    assert no_correction[-1].endswith("(the model card has no bias correction)")
    faith = {"smoe*gradcam++": {"deletion_auc": 1.0, "insertion_auc": 2.0, "random_deletion_auc": 1.5,
                                "random_insertion_auc": 1.5}}
    lines = report_pdf._faithfulness_lines({"faithfulness": faith})
    assert any("SMOE×Grad-CAM++: deletion 1.000" in line for line in lines)


def test_figure_display_range_from_a_sample_matches_the_whole_scan():
    from napari_bavis.figure import display_range

    rng = np.random.default_rng(1)
    scan = np.zeros((120, 140, 130), np.float32)  # 2.2 M voxels: the sampled path
    scan[20:100, 20:120, 15:115] = rng.gamma(4.0, 50.0, (80, 100, 100))
    lo, hi = display_range(scan)
    exact = np.percentile(scan[scan > 0], [1, 99.5])
    assert lo == pytest.approx(exact[0], rel=0.03) and hi == pytest.approx(exact[1], rel=0.03)
    assert display_range(np.zeros((4, 4, 4), np.float32)) == (0.0, 1.0)
