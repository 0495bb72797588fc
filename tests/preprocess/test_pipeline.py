import json
import threading

import nibabel as nib
import numpy as np
import pytest
from moved_scans import moved_template, pose_matrix

from napari_bavis.errors import Cancelled
from napari_bavis.grid import Grid
from napari_bavis.preprocess import PreprocessSpec, preprocess
from napari_bavis.preprocess.bias import n4_correct
from napari_bavis.preprocess.resample import normalise, smooth
from napari_bavis.preprocess.templates import template, template_on_grid

GRID_3MM = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 3.0)


def test_progress_reports_each_step_start_then_done(native_result):
    result, calls = native_result
    steps = [c[0] for c in calls]
    assert steps == [
        "reorient",
        "brain_extraction",  # the sample is skull-stripped: its own foreground, before N4 and registration
        "bias_correction",
        "registration",
        "resampling",
        "segmentation",
        "smoothing_normalisation",
        "done",
    ]
    assert [c[1] for c in calls] == list(range(8)) and {c[2] for c in calls} == {7}
    assert set(steps[:-1]) <= set(result.timings) and result.timings["total"] >= sum(
        result.timings[s] for s in steps[:-1]
    ) - 1e-6


def test_model_input_and_record(native_result):
    result, _ = native_result
    assert result.model_input.shape == tuple(result.grid.shape) and result.model_input.dtype == np.float32
    inside = result.registered_t1.get_fdata() > 0
    # z-scored inside the brain mask, zero outside
    assert abs(result.model_input[inside].mean()) < 0.05 and abs(result.model_input[inside].std() - 1) < 0.05
    assert np.all(result.model_input[~inside] == 0)
    record = json.loads(json.dumps(result.record))
    assert {"SimpleITK", "nibabel", "nilearn"} <= set(record["versions"])
    assert len(record["steps"]["registration"]["template_to_scan_ras"]) == 4
    assert record["steps"]["bias_correction"]["method"].startswith("SimpleITK N4")


def test_cancel_between_steps_raises_cancelled(native_scan):
    cancel = threading.Event()
    seen = []

    def progress(step, index, total):
        seen.append(step)
        if step == "reorient":
            cancel.set()

    with pytest.raises(Cancelled):
        preprocess(native_scan[0], PreprocessSpec(grid=GRID_3MM), progress=progress, cancel=cancel)
    assert seen == ["reorient"]  # the set event stopped the run before N4 started


def test_switched_off_steps_do_not_run():
    data, affine = template("t1", 2)
    spec = PreprocessSpec(
        grid=GRID_3MM, bias_correction=False, brain_extraction=False, registration="none", segmentation=False,
        smoothing_fwhm_mm=0.0,
    )
    result = preprocess(nib.Nifti1Image(np.array(data) + 0.05, affine), spec)  # + a visible background
    assert "registration" in result.timings and result.record["steps"]["registration"]["method"].startswith("none")
    assert "bias_correction" not in result.timings and "segmentation" not in result.timings
    assert result.brain_mask is None and result.gm_model is None
    outside = np.asarray(template_on_grid("mask", GRID_3MM)) < 0.01
    assert np.median(result.model_input[outside]) == pytest.approx(0.05, abs=0.01)  # background kept: no mask


def test_n4_flattens_a_bias_field():
    true_pose = pose_matrix()
    clean = moved_template(true_pose, voxel_size=(2.0, 2.0, 2.0), source_resolution=2).get_fdata(dtype=np.float32)
    biased = moved_template(true_pose, voxel_size=(2.0, 2.0, 2.0), source_resolution=2, bias_strength=0.5, seed=4)
    data = biased.get_fdata(dtype=np.float32)
    corrected, record = n4_correct(data, biased.affine)
    tissue = clean > 0.3

    def spread(x):  # coefficient of variation of the multiplicative error
        ratio = x[tissue] / clean[tissue]
        return ratio.std() / ratio.mean()

    assert spread(corrected) < 0.6 * spread(data)


def test_smoothing_uses_fwhm_in_mm():
    impulse = np.zeros(GRID_3MM.shape, np.float32)
    centre = tuple(n // 2 for n in GRID_3MM.shape)
    impulse[centre] = 1.0
    out = smooth(impulse, GRID_3MM, 12.0)
    profile = out[:, centre[1], centre[2]]
    half = profile.max() / 2
    above = np.flatnonzero(profile >= half)
    # the full width at half maximum, in mm, sampled on 3 mm voxels
    assert 9.0 <= (above[-1] - above[0] + 1) * 3.0 <= 15.0


@pytest.mark.parametrize("method", ["mean", "zscore", "robust_minmax"])
def test_normalisation_statistics_come_from_inside_the_mask(method):
    rng = np.random.default_rng(0)
    values = rng.normal(50, 10, (20, 20, 20)).astype(np.float32)
    mask = np.zeros(values.shape, bool)
    mask[5:15, 5:15, 5:15] = True
    values[~mask] = 1000.0  # must not influence the statistics
    out, _ = normalise(values, method, mask)
    inside = out[mask]
    if method == "mean":
        assert inside.mean() == pytest.approx(1.0, abs=1e-4)
    elif method == "zscore":
        assert inside.mean() == pytest.approx(0.0, abs=1e-4) and inside.std() == pytest.approx(1.0, abs=1e-3)
    else:
        assert 0.0 <= inside.min() and inside.max() <= 1.0 and np.mean((inside > 0) & (inside < 1)) > 0.95


def test_gm_model_input_is_the_smoothed_gm_map():
    data, affine = template("t1", 2)
    scan = nib.Nifti1Image(np.array(data), affine)
    spec = PreprocessSpec(input_kind="gm", grid=GRID_3MM, bias_correction=False, registration="none", smoothing_fwhm_mm=6.0)
    result = preprocess(scan, spec)
    np.testing.assert_allclose(result.model_input, smooth(result.gm_model, GRID_3MM, 6.0), atol=1e-5)
    assert result.qc["registration_correlation"] > 0.95  # QC still measured when registration is declared unnecessary
