"""pipeline.analyze / compare / export on real preprocessing with tiny models on a 6 mm grid."""

import json
import threading

import nibabel as nib
import numpy as np
import pytest

from napari_bavis import pipeline
from napari_bavis.errors import BavisError, Cancelled, CheckpointError
from napari_bavis.io import load_scan
from napari_bavis.samples import mni_t1, to_scanner_space

from tiny_models import GRID_6MM, tiny_brain_age_checkpoint, tiny_siamese_checkpoint


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    scan = to_scanner_space(mni_t1(2), rotation_deg=(8, -5, 4), translation_mm=(6, -10, 12), voxel_size=(2.0, 2.0, 2.4), storage="LPS", seed=3)
    nib.save(scan, root / "subject01.nii.gz")
    tiny_brain_age_checkpoint(root / "tiny.pt")
    return root


@pytest.fixture(scope="module")
def analysis(workdir):
    steps = []
    result = pipeline.analyze(
        workdir / "subject01.nii.gz", workdir / "tiny.pt", chronological_age=95.0,
        methods=("gradcam++", "smoe", "smoe*gradcam++"), device="cpu",
        progress=lambda step, done, total: steps.append((step, done, total)),
    )
    return result, steps


def test_analysis_has_prediction_maps_on_scan_grid_and_timings(analysis):
    result, steps = analysis
    assert np.isfinite(result.prediction.brain_age)
    assert result.prediction.gap == pytest.approx(result.prediction.brain_age - 95.0)
    assert "outside the training range" in result.prediction.out_of_range_warning
    assert result.prediction.out_of_range_warning in result.notes
    assert set(result.maps) == {"gradcam++", "smoe", "smoe*gradcam++"}
    for values in result.maps.values():
        assert values.shape == result.scan.data.shape and values.dtype == np.float32
        assert 0.0 <= values.min() and values.max() <= 1.0
    for values in result.maps_model.values():
        assert values.shape == GRID_6MM.shape
    assert result.maps["smoe"].max() > 0.5
    assert {"load scan", "predict brain age", "explanation maps", "maps onto the scan"} <= set(result.timings)
    assert any(k.startswith("preprocess: ") for k in result.timings)


def test_progress_is_reported_in_order_and_ends_done(analysis):
    _, steps = analysis
    names = [s for s, _, _ in steps]
    assert names[0] == "load scan" and names[-1] == "done"
    assert names.index("predict brain age") < names.index("explanation maps")
    done = [d for _, d, _ in steps]
    assert done == sorted(done)
    assert all(d <= t for _, d, t in steps)


def test_maps_are_restricted_to_the_brain(analysis):
    result, _ = analysis
    mask = np.asarray(result.qc["brain mask"].dataobj) > 0
    assert result.record["maps_restricted_to_brain_mask"]
    for values in result.maps.values():
        assert mask.shape == values.shape
        assert not values[~mask].any()
    assert result.maps["smoe"][mask].mean() > 0.1


def test_map_image_is_in_the_file_space(analysis, workdir):
    result, _ = analysis
    src = nib.load(workdir / "subject01.nii.gz")
    img = result.map_image("gradcam++")
    assert img.shape == src.shape
    np.testing.assert_allclose(img.affine, src.affine, atol=1e-5)


def test_export_writes_maps_figure_and_report_without_touching_input(analysis, workdir):
    result, _ = analysis
    before = (workdir / "subject01.nii.gz").read_bytes()
    out = workdir / "out" / "subject01"
    report = pipeline.export_analysis(result, out, threshold=0.3)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["faithfulness.png", "figure.png", "map_gradcampp.nii.gz", "map_smoe.nii.gz",
                     "map_smoexgradcampp.nii.gz", "report.json", "report.pdf"]
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == report
    for key in ("brain_age", "chronological_age", "brain_age_gap", "brain_age_gap_corrected", "regions", "model", "record"):
        assert key in on_disk
    assert on_disk["model"]["name"] == "tiny"
    assert on_disk["brain_age_gap_corrected"] is not None
    assert on_disk["record"]["versions"]["napari-bavis"]
    assert (workdir / "subject01.nii.gz").read_bytes() == before
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left
    # exporting again replaces the folder's content as a whole
    pipeline.export_analysis(result, out, threshold=0.5)
    assert json.loads((out / "report.json").read_text())["threshold"]["value"] == 0.5


def test_cancel_between_steps_raises_cancelled(workdir):
    cancel = threading.Event()

    def progress(step, done, total):
        if step.startswith("preprocess: registration"):
            cancel.set()

    with pytest.raises(Cancelled):
        pipeline.analyze(workdir / "subject01.nii.gz", workdir / "tiny.pt", device="cpu", progress=progress, cancel=cancel)


def test_bad_inputs_raise_readable_errors(workdir, tmp_path):
    with pytest.raises(CheckpointError):
        pipeline.analyze(workdir / "subject01.nii.gz", tmp_path / "missing.pt", device="cpu")
    with pytest.raises(BavisError, match="unknown map method"):
        pipeline.analyze(workdir / "subject01.nii.gz", workdir / "tiny.pt", methods=("lime",))
    (tmp_path / "text.nii.gz").write_text("hello")
    with pytest.raises(BavisError, match="text.nii.gz"):
        pipeline.analyze(tmp_path / "text.nii.gz", workdir / "tiny.pt")


def test_sex_is_required_when_the_model_takes_it(workdir, tmp_path):
    ckpt = tiny_brain_age_checkpoint(tmp_path / "with_sex.pt", with_sex=True)
    scan = load_scan(workdir / "subject01.nii.gz")
    with pytest.raises(BavisError, match="sex"):
        pipeline.analyze(scan, ckpt, methods=(), device="cpu")


def test_compare_gives_one_map_per_scan(workdir, tmp_path):
    other = to_scanner_space(mni_t1(2), rotation_deg=(-6, 3, 0), translation_mm=(0, 5, -5), voxel_size=(2.2, 2.0, 2.0), storage="RAS", seed=4)
    nib.save(other, tmp_path / "subject02.nii.gz")
    ckpt = tiny_siamese_checkpoint(tmp_path / "siamese.pt")
    result = pipeline.compare(workdir / "subject01.nii.gz", tmp_path / "subject02.nii.gz", ckpt, methods=("gradcam++", "smoe"), device="cpu")
    assert -1.0 <= result.similarity.cosine <= 1.0
    assert result.similarity.nearest_reference_a in {"healthy", "AD-like"}
    assert result.maps_a["smoe"].shape == result.scan_a.data.shape
    assert result.maps_b["smoe"].shape == result.scan_b.data.shape
    with pytest.raises(BavisError, match="Siamese"):
        pipeline.compare(workdir / "subject01.nii.gz", tmp_path / "subject02.nii.gz", workdir / "tiny.pt", device="cpu")
