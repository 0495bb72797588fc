"""A published model's input space (SFCN): the array preprocess builds for a scan already in MNI space
equals the recipe of Peng et al. 2021 written here from the paper's description, and maps go back."""

from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest

from napari_bavis.errors import CheckpointError
from napari_bavis.models import preset_card
from napari_bavis.preprocess import PreprocessSpec, preprocess
from napari_bavis.preprocess.geometry import resample
from napari_bavis.preprocess.input_space import InputSpace
from napari_bavis.preprocess.templates import template

#: a marker in the LEFT hemisphere (x < 0 in MNI/RAS mm): x -45..-36, y -10..-1, z 10..19
MARKER_MM = ((-45, -36), (-10, -1), (10, 19))


def _mni_scan_on_ras_1mm():
    """An MNI-space, skull-stripped T1 on a RAS 1 mm grid whose voxel centres are FSL's (x -91..90,
    y -126..91, z -72..109), with a bright left-hemisphere cube; (image, marker mask)."""
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (-91, -126, -72)
    shape = (182, 218, 182)
    t1, t1_affine = template("t1", 1)
    mask, _ = template("mask", 1)
    data = resample(np.asarray(t1) * (np.asarray(mask) > 0.5), t1_affine, shape, affine, order=1)
    marker = np.zeros(shape, bool)
    lo = [int(b[0] - affine[i, 3]) for i, b in enumerate(MARKER_MM)]
    hi = [int(b[1] - affine[i, 3]) + 1 for i, b in enumerate(MARKER_MM)]
    marker[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    data[marker] = 3.0 * data.max()
    return nib.Nifti1Image(data.astype(np.float32), affine), marker


def _reference_recipe(ras_array: np.ndarray) -> np.ndarray:
    """Peng et al. 2021, from their description: the brain in FSL's MNI152 1 mm array (182x218x182, first
    axis running right -> left, i.e. voxel i at x = 90 - i mm), divided by the array's mean, then the
    central 160x192x160 kept ((182-160)/2 = 11, (218-192)/2 = 13 voxels dropped at each low end)."""
    fsl = ras_array[::-1, :, :].astype(np.float64)  # RAS voxel r is at x = r - 91, FSL voxel i at 90 - i: r = 181 - i
    fsl = fsl / fsl.mean()
    return fsl[11:171, 13:205, 11:171]


@pytest.fixture(scope="module")
def mni_case():
    image, marker = _mni_scan_on_ras_1mm()
    card = preset_card("sfcn-ukb").validate()
    # already in MNI space, already brain-extracted and bias-free: only the input space's own steps run
    spec = replace(PreprocessSpec.from_card(card.to_dict()), registration="none", bias_correction=False,
                   brain_extraction=False)
    return image, marker, spec, preprocess(image, spec)


def test_model_input_equals_the_published_recipe(mni_case):
    image, _, _, pre = mni_case
    reference = _reference_recipe(np.asarray(image.dataobj))
    assert pre.model_input.shape == (160, 192, 160) == reference.shape
    np.testing.assert_allclose(pre.model_input, reference, rtol=1e-5, atol=1e-6)
    assert abs(float(pre.model_input.mean()) - 1.0) > 0.01  # the mean is the uncropped array's, not the crop's


def test_left_marker_lands_on_the_high_end_of_axis_0(mni_case):
    """FSL storage: axis 0 runs right -> left, so a left-hemisphere marker sits at high i (x = 79 - i)."""
    _, _, _, pre = mni_case
    x = pre.model_input
    hot = np.argwhere(x > 0.8 * x.max())
    assert len(hot) == 1000
    centre_i = hot[:, 0].mean()
    assert centre_i == pytest.approx(79 - (-40.5), abs=0.01)  # 119.5: the left side of the array's axis 0
    assert (pre.grid.affine[:3, :3] @ hot.mean(axis=0) + pre.grid.affine[:3, 3])[0] == pytest.approx(-40.5)


def test_storage_order_of_the_file_does_not_matter(mni_case):
    image, _, spec, pre = mni_case
    restored = image.as_reoriented(np.array([[1, 1], [0, -1], [2, -1]]))  # axes permuted and flipped: "PIL"-like
    again = preprocess(nib.Nifti1Image(np.asarray(restored.dataobj), restored.affine), spec)
    np.testing.assert_allclose(again.model_input, pre.model_input, rtol=1e-5, atol=1e-6)


def test_to_native_puts_a_model_grid_map_back_on_the_marker(mni_case):
    image, marker, _, pre = mni_case
    x = pre.model_input
    on_grid = (x > 0.8 * x.max()).astype(np.float32)
    native = pre.to_native(on_grid, order=0) > 0.5
    assert native.shape == image.shape
    assert (native & marker).sum() == marker.sum() == native.sum()


def test_card_input_space_is_checked():
    card = preset_card("sfcn-ukb").to_dict()
    space = dict(card["input_space"], storage="RAS")
    with pytest.raises(CheckpointError, match="storage 'RAS' does not match"):
        InputSpace.from_dict(space)
    bad = preset_card("sfcn-ukb")
    bad.input_space = dict(bad.input_space, crop={"start": [0, 0, 0], "shape": [160, 192, 160]})
    with pytest.raises(CheckpointError, match="crop of the template grid is not the card's grid"):
        bad.validate()
