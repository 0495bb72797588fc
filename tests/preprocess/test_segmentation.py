import nibabel as nib
import numpy as np
import pytest
from moved_scans import moved_template, pose_matrix

from napari_bavis.grid import MNI_1P5, Grid
from napari_bavis.preprocess import PreprocessSpec, preprocess
from napari_bavis.preprocess.segment import em_segment, tissue_priors
from napari_bavis.preprocess.templates import template, template_on_grid


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def template_scan():
    data, affine = template("t1", 1)
    return nib.Nifti1Image(np.array(data), affine)


def test_gm_and_wm_of_the_template_match_nilearn_maps(template_scan):
    """The issue's check: Dice >= 0.8 against nilearn's GM/WM maps thresholded at 0.5."""
    spec = PreprocessSpec(input_kind="gm", grid=MNI_1P5, bias_correction=False, smoothing_fwhm_mm=0.0)
    result = preprocess(template_scan, spec)
    gm_ref = template_on_grid("gm", MNI_1P5) > 0.5
    wm_ref = template_on_grid("wm", MNI_1P5) > 0.5
    assert dice(result.gm_model > 0.5, gm_ref) >= 0.8
    assert dice(result.tissues["wm"] > 0.5, wm_ref) >= 0.8
    # the registration of the template onto itself must stay close to the identity
    np.testing.assert_allclose(result.template_to_scan[:3, :3], np.eye(3), atol=0.03)
    assert np.abs(result.template_to_scan[:3, 3]).max() < 1.5


def test_intensity_overrules_a_shifted_prior():
    """EM must use intensities: priors shifted by 3 mm still give the template's own tissue."""
    grid = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 2.0)
    t1 = np.asarray(template_on_grid("t1", grid))
    gm, wm, mask = (np.asarray(template_on_grid(k, grid)) for k in ("gm", "wm", "mask"))
    shifted = tissue_priors(np.roll(gm, 2, axis=0), np.roll(wm, 2, axis=0), mask)
    post, _ = em_segment(t1, shifted, mask > 0.5)
    prior_only = dice(shifted[1] > 0.5, wm > 0.5)
    assert dice(post[1] > 0.5, wm > 0.5) > prior_only + 0.05


def test_posteriors_are_probabilities_inside_the_mask_and_zero_outside():
    grid = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 3.0)
    t1 = np.asarray(template_on_grid("t1", grid))
    mask = np.asarray(template_on_grid("mask", grid)) > 0.5
    priors = tissue_priors(template_on_grid("gm", grid), template_on_grid("wm", grid), template_on_grid("mask", grid))
    post, record = em_segment(t1, priors, mask)
    np.testing.assert_allclose(post.sum(axis=0)[mask], 1.0, atol=1e-4)
    assert np.all(post[:, ~mask] == 0)
    csf, gm, wm = (record["means_relative_to_median"][i] for i in (2, 0, 1))
    assert csf < gm < wm  # T1 contrast


def test_modulation_preserves_native_gm_volume():
    """A head 10 % larger per axis: modulated GM on the grid sums to ~1.33x the unmodulated GM."""
    grid = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 3.0)
    scan = moved_template(pose_matrix(scale=(1.1, 1.1, 1.1)), voxel_size=(2.0, 2.0, 2.0), source_resolution=2)
    common = dict(input_kind="gm", grid=grid, bias_correction=False, smoothing_fwhm_mm=0.0)
    plain = preprocess(scan, PreprocessSpec(modulation=False, **common))
    modulated = preprocess(scan, PreprocessSpec(modulation=True, **common))
    ratio = modulated.gm_model.sum() / plain.gm_model.sum()
    assert ratio == pytest.approx(1.1**3, rel=0.05)
    assert modulated.qc["gm_volume_ml"] == pytest.approx(plain.qc["gm_volume_ml"], rel=1e-3)  # threads: tiny jitter
