import nibabel as nib
import numpy as np
import pytest

from napari_bavis.errors import BavisError, PreprocessError, ScanError
from napari_bavis.grid import MNI_1P5, Grid
from napari_bavis.preprocess import PreprocessSpec, preprocess
from napari_bavis.preprocess.orient import canonical, validated_volume


def _img(data, affine=None):
    return nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.eye(4) if affine is None else affine)


def _brainish(shape=(40, 40, 40)):
    return np.random.default_rng(0).random(shape).astype(np.float32)


@pytest.mark.parametrize(
    "data, words",
    [
        (np.ones((64, 64), np.float32), "2D"),
        (np.random.default_rng(0).random((40, 40, 40, 3)).astype(np.float32), "3 volumes"),
        (np.zeros((40, 40, 40), np.float32), "every voxel is 0"),
        (np.full((40, 40, 40), 7.0, np.float32), "constant"),
        (np.where(np.eye(40)[..., None] > 0, np.nan, 1.0) * np.ones((40, 40, 40), np.float32), "NaN or Inf"),
        (np.where(np.arange(40) == 3, np.inf, 1.0)[:, None, None] * np.ones((40, 40, 40), np.float32), "NaN or Inf"),
        (np.random.default_rng(0).random((10, 10, 10)).astype(np.float32), "10x10x10"),
    ],
    ids=["2d", "4d-multi", "all-zero", "constant", "nan", "inf", "tiny"],
)
def test_unusable_volumes_raise_scan_error_with_one_line(data, words):
    with pytest.raises(ScanError) as info:
        preprocess(_img(data), PreprocessSpec())
    message = str(info.value)
    assert words in message
    assert "\n" not in message and len(message) < 200


def test_singular_affine_is_refused():
    img = _img(_brainish())
    img._affine[2, 2] = 0.0  # nibabel will not build such an image, but a loaded header can carry one
    with pytest.raises(ScanError, match="singular"):
        validated_volume(img)


def test_single_volume_4d_is_accepted_as_3d():
    data = _brainish((40, 41, 42))
    vol, affine = validated_volume(_img(data[..., None]))
    assert vol.shape == (40, 41, 42)
    np.testing.assert_array_equal(vol, data)


def test_canonical_only_permutes_voxels_and_keeps_world_positions():
    data = _brainish((40, 41, 42))
    affine = np.array([[0, 0, -1.5, 80], [-1.2, 0, 0, 90], [0, 1.1, 0, -60], [0, 0, 0, 1.0]])  # PIL-ish storage
    out, out_affine = canonical(data, affine)
    assert nib.aff2axcodes(out_affine) == ("R", "A", "S")
    assert sorted(out.shape) == sorted(data.shape)
    # the voxel at native index (3, 5, 7) sits at the same world point after reorientation
    world = affine @ np.array([3, 5, 7, 1.0])
    idx = np.round(np.linalg.inv(out_affine) @ world).astype(int)[:3]
    assert out[tuple(idx)] == data[3, 5, 7]


def test_errors_are_bavis_errors():
    assert issubclass(ScanError, BavisError) and issubclass(PreprocessError, BavisError)


def test_spec_from_card_reads_kind_grid_and_preprocessing():
    grid = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 3.0)
    card = {
        "input_kind": "gm",
        "grid": grid.to_dict(),
        "preprocessing": {
            "bias_correction": False,
            "brain_extraction": True,
            "registration": "affine",
            "segmentation": True,
            "modulation": True,
            "smoothing_fwhm_mm": 4,
            "intensity_normalisation": "mean",
        },
    }
    spec = PreprocessSpec.from_card(card)
    assert spec.input_kind == "gm" and spec.grid == grid and spec.grid != MNI_1P5
    assert spec.bias_correction is False and spec.modulation is True
    assert spec.smoothing_fwhm_mm == 4.0 and spec.intensity_normalisation == "mean"
    assert spec.brain_extraction_backend == "auto"


@pytest.mark.parametrize(
    "card, words",
    [
        ({"input_kind": "flair"}, "input_kind"),
        ({"input_kind": "gm", "preprocessing": {"segmentation": False}}, "segmentation"),
        ({"preprocessing": {"intensity_normalisation": "histogram"}}, "intensity_normalisation"),
        ({"preprocessing": {"registration": "syn"}}, "registration"),
        ({"preprocessing": {"warp_speed": 9}}, "warp_speed"),
        ({"grid": {"shape": [1, 2]}}, "malformed"),
    ],
)
def test_bad_cards_give_one_line_preprocess_errors(card, words):
    with pytest.raises(PreprocessError) as info:
        PreprocessSpec.from_card(card)
    assert words in str(info.value) and "\n" not in str(info.value)
