import numpy as np
from scipy import ndimage

from napari_bavis.preprocess.templates import template

CUBE = np.ones((3, 3, 3), bool)  # "within one voxel" includes diagonal neighbours
BOX_MM = ((-30.0, 30.0), (-40.0, 20.0), (0.0, 40.0))


def _in_box(points_mm):
    return np.all([(points_mm[..., a] >= lo) & (points_mm[..., a] <= hi) for a, (lo, hi) in enumerate(BOX_MM)], axis=0)


def _world_points(shape, affine):
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    return idx @ affine[:3, :3].T + affine[:3, 3]


def test_a_box_in_mni_lands_on_the_right_native_voxels(native_scan, native_result):
    scan, true_pose = native_scan
    result, _ = native_result
    grid = result.grid
    box_on_grid = _in_box(_world_points(grid.shape, grid.affine)).astype(np.float32)

    native = result.to_native(box_on_grid, order=0)
    assert native.shape == scan.shape

    # truth: native voxel -> scan mm -> template mm through the TRUE pose -> inside the box?
    scan_mm = _world_points(scan.shape, scan.affine)
    mni_mm = scan_mm @ np.linalg.inv(true_pose)[:3, :3].T + np.linalg.inv(true_pose)[:3, 3]
    truth = _in_box(mni_mm)
    predicted = native > 0.5
    assert truth.sum() > 1000
    # within one voxel: everything predicted lies in the dilated truth, everything in the eroded truth is predicted
    assert not np.any(predicted & ~ndimage.binary_dilation(truth, CUBE))
    assert not np.any(ndimage.binary_erosion(truth, CUBE) & ~predicted)


def test_brain_mask_is_on_the_input_grid_and_matches_the_true_brain(native_scan, native_result):
    scan, true_pose = native_scan
    result, _ = native_result
    mask_img = result.brain_mask
    assert mask_img.shape == scan.shape and mask_img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(mask_img.affine, scan.affine)
    mask, mask_affine = template("mask", 2)
    scan_mm = _world_points(scan.shape, scan.affine)
    vox = (scan_mm @ np.linalg.inv(true_pose)[:3, :3].T + np.linalg.inv(true_pose)[:3, 3]) @ np.linalg.inv(
        mask_affine
    )[:3, :3].T + np.linalg.inv(mask_affine)[:3, 3]
    truth = ndimage.map_coordinates(mask, np.moveaxis(vox, -1, 0), order=1) >= 0.5
    predicted = np.asarray(mask_img.dataobj) > 0
    dice = 2 * (truth & predicted).sum() / (truth.sum() + predicted.sum())
    assert dice > 0.95
    assert abs(result.qc["mask_volume_ml"] - predicted.sum() * 8 / 1000) < 1e-6


def test_registered_t1_overlays_the_template(native_result):
    result, _ = native_result
    reg = result.registered_t1.get_fdata()
    tpl = result.template_t1.get_fdata()
    inside = tpl > 0.1
    assert result.registered_t1.shape == tuple(result.grid.shape)
    np.testing.assert_allclose(result.registered_t1.affine, result.grid.affine)
    assert np.corrcoef(reg[inside], tpl[inside])[0, 1] > 0.9
    assert result.qc["registration_correlation"] > 0.9


def test_to_native_rejects_a_map_on_another_grid(native_result):
    import pytest

    result, _ = native_result
    with pytest.raises(ValueError, match="model grid"):
        result.to_native(np.zeros((10, 10, 10), np.float32))
