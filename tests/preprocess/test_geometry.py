"""preprocess.geometry: the 8-bit mask resampling must give exactly what nearest-neighbour
resampling of the mask as float gives, on an oblique grid, and False outside the input."""

import numpy as np

from napari_bavis.preprocess.geometry import resample, resample_mask


def _oblique(angle_deg, voxel, origin):
    a = np.radians(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot * voxel
    affine[:3, 3] = origin
    return affine


def test_resample_mask_equals_nearest_float_resampling_on_an_oblique_grid():
    rng = np.random.default_rng(0)
    mask = np.zeros((40, 44, 30), bool)
    mask[5:35, 8:40, 4:26] = rng.random((30, 32, 22)) > 0.3
    src = _oblique(9.0, np.array([0.9, 0.9, 1.1]), (-18.0, -20.0, -15.0))
    dst = _oblique(0.0, np.array([1.0, 1.0, 1.0]), (-25.0, -25.0, -20.0))
    out = resample_mask(mask, src, (50, 52, 40), dst)
    expected = resample(mask.astype(np.float32), src, (50, 52, 40), dst, order=0) > 0.5
    assert out.dtype == bool and out.shape == (50, 52, 40)
    assert np.array_equal(out, expected)
    assert 0.3 * mask.sum() < out.sum() < 2.0 * mask.sum()  # the mask moved, not lost or grown
    assert not out[:3].any()  # outside the input's field: False, not garbage
