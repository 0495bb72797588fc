import gzip

import nibabel as nib
import numpy as np
import pytest

from napari_bavis.errors import ScanError
from napari_bavis.io import (
    affine_from_layer_geometry,
    load_scan,
    obliquity_deg,
    scan_from_image,
    write_nifti,
)

from volumes import marker_image

CASES = [("RAS", 0.0), ("LPS", 0.0), ("LAS", 0.0), ("ASL", 0.0), ("SRP", 0.0), ("RAS", 10.0)]


@pytest.mark.parametrize("codes,oblique", CASES)
def test_display_grid_keeps_marker_at_its_ras_position(codes, oblique):
    img = marker_image(codes, oblique_deg=oblique)
    scan = scan_from_image(img)
    assert all(s > 0 for s in scan.scale)
    shown = np.array(np.unravel_index(np.argmax(scan.data), scan.data.shape), float)
    ras_shown = scan.display_affine @ np.append(shown, 1)
    ras_true = img.affine @ np.array([5, 7, 9, 1.0])
    tol = 1e-4 if not oblique else 2.0
    assert np.linalg.norm(ras_shown[:3] - ras_true[:3]) <= tol


def test_obliquity_is_measured_and_reported():
    img = marker_image("RAS", oblique_deg=10.0)
    scan = scan_from_image(img, path="tilted.nii.gz")
    assert 10.0 <= scan.oblique_deg <= 11.5  # 10 deg about x plus 4 deg about y
    assert scan.resampled
    assert any("oblique" in w for w in scan.warnings)
    straight = scan_from_image(marker_image("LPS"))
    assert straight.oblique_deg < 1e-6 and not straight.resampled and not straight.warnings


def test_obliquity_of_axis_aligned_display_affine_is_zero():
    aff = np.array([[0, 0, 2.0, -5], [0, 1.5, 0, 3], [1.0, 0, 0, 7], [0, 0, 0, 1]])
    assert obliquity_deg(aff) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("codes,oblique", CASES)
def test_to_source_restores_file_grid(codes, oblique):
    img = marker_image(codes, oblique_deg=oblique)
    scan = scan_from_image(img)
    back = scan.to_source(scan.data)
    assert back.shape == img.shape
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-6)
    original = np.asarray(img.dataobj)
    if not oblique:
        np.testing.assert_array_equal(np.asarray(back.dataobj), original)
    else:  # interpolated twice: the marker survives at its voxel, the background stays close
        restored = np.asarray(back.dataobj)
        assert np.unravel_index(np.argmax(restored), restored.shape) == (5, 7, 9)
        inner = (slice(3, -3),) * 3
        assert np.corrcoef(restored[inner].ravel(), original[inner].ravel())[0, 1] > 0.5


def test_single_volume_4d_is_squeezed(tmp_path):
    img = marker_image()
    path = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[..., None], img.affine), path)
    assert load_scan(path).data.ndim == 3


def _write(path, data, affine=np.eye(4)):
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


@pytest.mark.parametrize(
    "kind,needle",
    [
        ("empty", "empty"),
        ("text", "not a readable"),
        ("truncated", "truncated"),
        ("2d", "2D"),
        ("4d", "3 volumes"),
        ("nan", "no finite"),
        ("zeros", "no signal"),
        ("singular", "singular"),
        ("missing", "not found"),
    ],
)
def test_bad_files_raise_one_readable_line(tmp_path, kind, needle):
    path = tmp_path / f"bad_{kind}.nii.gz"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("subject,age\n1,70\n")
    elif kind == "truncated":
        _write(path, np.random.default_rng(0).random((30, 30, 30)).astype(np.float32))
        raw = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 2])
    elif kind == "2d":
        _write(path, np.ones((16, 16), np.float32))
    elif kind == "4d":
        _write(path, np.random.default_rng(0).random((8, 8, 8, 3)).astype(np.float32))
    elif kind == "nan":
        _write(path, np.full((8, 8, 8), np.nan, np.float32))
    elif kind == "zeros":
        _write(path, np.zeros((8, 8, 8), np.float32))
    elif kind == "singular":
        hdr = nib.Nifti1Header()
        hdr.set_sform(np.diag([1.0, 0.0, 1.0, 1.0]), code=1)
        nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 8)).astype(np.float32), None, hdr), path)
    with pytest.raises(ScanError) as info:
        load_scan(path)
    message = str(info.value)
    assert needle in message and "\n" not in message and path.name in message


def test_partial_nan_is_zeroed_with_a_warning(tmp_path):
    data = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32)
    data[0, 0, 0] = np.nan
    scan = load_scan(_write(tmp_path / "partial.nii", data))
    assert np.isfinite(scan.data).all()
    assert any("1 NaN/Inf" in w for w in scan.warnings)


def test_affine_from_layer_geometry_follows_axis_letters():
    aff = affine_from_layer_geometry((2.0, 1.5, 1.0), (10.0, -20.0, 30.0), ("S", "A", "R"))
    np.testing.assert_allclose(aff @ [1, 1, 1, 1], [31.0, -18.5, 12.0, 1.0])
    lps = affine_from_layer_geometry((1.0, 1.0, 1.0), (5.0, 6.0, 7.0), ("L", "P", "S"))
    np.testing.assert_allclose(lps @ [0, 0, 0, 1], [-5.0, -6.0, 7.0, 1.0])
    with pytest.raises(ScanError):
        affine_from_layer_geometry((1, 1, 1), (0, 0, 0), ("S", "I", "R"))


def test_write_is_atomic_and_protects_sources(tmp_path):
    img = marker_image()
    src = tmp_path / "scan.nii.gz"
    nib.save(img, src)
    before = src.read_bytes()
    with pytest.raises(ScanError, match="refusing to overwrite"):
        write_nifti(src, img, protect=(src,))
    assert src.read_bytes() == before
    out = tmp_path / "out.nii.gz"
    write_nifti(out, img)
    with pytest.raises(ScanError, match="already exists"):
        write_nifti(out, img, overwrite=False)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary leftovers
    with pytest.raises(ScanError, match=".nii"):
        write_nifti(tmp_path / "out.png", img)
