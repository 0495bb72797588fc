"""QC checkerboard of the registered scan and the template (qc_view.py)."""

import nibabel as nib
import numpy as np
import pytest

from napari_bavis import qc_view


def test_normalised_spans_zero_to_one_and_ignores_outliers():
    x = np.linspace(-5, 5, 1000).reshape(10, 10, 10).astype(np.float32)
    x[0, 0, 0] = 1e6  # one hot voxel must not squash the rest
    y = qc_view.normalised(x)
    assert y.dtype == np.float32 and y.min() == 0.0 and y.max() == 1.0
    assert 0.4 < float(np.median(y)) < 0.6
    assert np.all(qc_view.normalised(np.full((3, 3, 3), 7.0)) == 0.0)  # flat input: no division by zero


def test_checkerboard_alternates_tiles_along_every_axis():
    a = np.zeros((16, 16, 16), np.float32)
    b = np.ones((16, 16, 16), np.float32) * 50
    a[-1], b[-1] = 1.0, 0.0  # give each a range: normalised a -> 0, b -> 1 away from the last plane
    board = qc_view.checkerboard(a, b, (4, 4, 4))
    assert board[1, 1, 1] == 0.0 and board[5, 1, 1] == 1.0 and board[1, 5, 1] == 1.0 and board[1, 1, 5] == 1.0
    assert board[5, 5, 1] == 0.0 and board[5, 5, 5] == 1.0
    for axis in range(3):  # any slice through the volume is a 2-D checkerboard with both images
        plane = np.take(board, 9, axis=axis)
        assert set(np.unique(plane[1:, 1:])) == {0.0, 1.0}


def test_checkerboard_rejects_mismatched_arrays():
    with pytest.raises(ValueError):
        qc_view.checkerboard(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))


def test_registration_checkerboard_shows_a_misregistration_at_tile_borders():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    zz, yy, xx = np.meshgrid(*[np.arange(40)] * 3, indexing="ij")

    def ball(c):
        return (((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) < 12 ** 2).astype(np.float32)

    template = nib.Nifti1Image(ball((20, 20, 20)), affine)
    good = qc_view.registration_checkerboard(nib.Nifti1Image(ball((20, 20, 20)), affine), template)
    bad = qc_view.registration_checkerboard(nib.Nifti1Image(ball((20, 20, 26)), affine), template)
    np.testing.assert_array_equal(good.affine, affine)
    assert good.shape == (40, 40, 40)
    # aligned: the checkerboard is just the ball; shifted: the tiles disagree along the ball's edge
    np.testing.assert_array_equal(np.asarray(good.dataobj), ball((20, 20, 20)))
    assert np.abs(np.asarray(bad.dataobj) - ball((20, 20, 20))).sum() > 100


def test_registration_checkerboard_tiles_are_in_millimetres():
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    a = nib.Nifti1Image(np.zeros((20, 20, 20), np.float32), affine)
    b = nib.Nifti1Image(np.ones((20, 20, 20), np.float32), affine)
    a.dataobj[-1] = 1.0
    b.dataobj[-1] = 0.0
    board = np.asarray(qc_view.registration_checkerboard(a, b, tile_mm=16.0).dataobj)
    assert board[1, 1, 1] == 0.0 and board[3, 1, 1] == 0.0 and board[4, 1, 1] == 1.0  # 16 mm = 4 voxels
