"""The npe2 contributions as napari calls them: manifest, reader, writer."""

import subprocess
import sys

import nibabel as nib
import npe2
import numpy as np
import pytest
from napari.layers import Image

from napari_bavis.napari import _reader, _writer

from volumes import marker_image

CASES = [("RAS", 0.0), ("LPS", 0.0), ("LAS", 0.0), ("ASL", 0.0), ("SRP", 0.0), ("RAS", 10.0)]


def test_npe2_validate():
    done = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-bavis"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-bavis")
    assert manifest.name == "napari-bavis"
    assert all(c.id.startswith("napari-bavis.") for c in manifest.contributions.commands)


def read_layers(path):
    layers = npe2.read([str(path)], stack=False, plugin_name="napari-bavis")
    return [Image(data, **kwargs) for data, kwargs, _ in layers]


@pytest.mark.parametrize("codes,oblique", CASES)
def test_marker_lands_at_its_ras_millimetres(tmp_path, codes, oblique):
    img = marker_image(codes, voxel_size=(1.0, 1.5, 2.0), oblique_deg=oblique)
    path = tmp_path / f"marker_{codes}.nii.gz"
    nib.save(img, path)
    (layer,) = read_layers(path)
    assert layer.data.dtype == np.float32
    assert tuple(layer.axis_labels) == ("S", "A", "R")
    assert tuple(str(u) for u in layer.units) == ("millimeter",) * 3
    assert all(s > 0 for s in layer.scale)
    index = np.unravel_index(np.argmax(layer.data), layer.data.shape)
    world_sar = np.asarray(layer.data_to_world(index))
    expected_ras = (img.affine @ np.array([5, 7, 9, 1.0]))[:3]
    error = np.linalg.norm(world_sar[::-1] - expected_ras)
    if oblique:
        assert error <= 2.0  # one voxel of the coarsest axis
    else:
        assert error < 1e-4
    np.testing.assert_allclose(layer.metadata["bavis_source"]["source_affine"], img.affine)
    assert layer.metadata["bavis_source"]["header"] is not None


@pytest.mark.parametrize("codes,oblique", CASES)
def test_round_trip_keeps_affine_and_voxels_and_source(tmp_path, codes, oblique):
    img = marker_image(codes, oblique_deg=oblique)
    src = tmp_path / "scan.nii.gz"
    nib.save(img, src)
    before = src.read_bytes()
    (layer,) = read_layers(src)
    data, meta, _ = layer.as_layer_data_tuple()
    out = tmp_path / "copy.nii.gz"
    assert _writer.write_image(str(out), data, meta) == [str(out)]
    back = nib.load(out)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-5)
    assert back.shape == img.shape
    if not oblique:
        np.testing.assert_array_equal(np.asarray(back.dataobj), np.asarray(img.dataobj))
    else:
        restored = np.asarray(back.dataobj)
        assert np.unravel_index(np.argmax(restored), restored.shape) == (5, 7, 9)
    # a second write elsewhere leaves the source untouched
    _writer.write_image(str(tmp_path / "copy2.nii"), data, meta)
    assert src.read_bytes() == before


def test_layer_without_source_gets_affine_from_geometry(tmp_path):
    data = np.zeros((10, 12, 14), np.float32)
    data[2, 3, 4] = 1
    layer = Image(data, scale=(2.0, 1.5, 1.0), translate=(-10.0, 5.0, 3.0), axis_labels=("S", "A", "R"))
    out = tmp_path / "fresh.nii.gz"
    _writer.write_image(str(out), *layer.as_layer_data_tuple()[:2])
    back = nib.load(out)
    idx = np.argwhere(np.asarray(back.dataobj) == 1)[0]
    np.testing.assert_allclose((back.affine @ np.append(idx, 1))[:3], np.asarray(layer.data_to_world((2, 3, 4)))[::-1])


def test_reader_declines_other_files(tmp_path):
    assert _reader.get_reader(str(tmp_path / "image.tif")) is None
    assert _reader.get_reader([str(tmp_path / "a.nii"), str(tmp_path / "b.png")]) is None
    assert _reader.get_reader(str(tmp_path / "a.nii.gz")) is not None


def test_bad_files_give_one_notification_and_no_layer(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(_reader, "show_error", shown.append)
    bad = {
        "empty.nii.gz": b"",
        "notes.nii.gz": b"this is a text file\n",
    }
    for name, payload in bad.items():
        (tmp_path / name).write_bytes(payload)
    nib.save(nib.Nifti1Image(np.ones((16, 16), np.float32), np.eye(4)), tmp_path / "flat.nii.gz")
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((6, 6, 6, 3)).astype(np.float32), np.eye(4)), tmp_path / "fmri.nii.gz")
    nib.save(nib.Nifti1Image(np.full((6, 6, 6), np.nan, np.float32), np.eye(4)), tmp_path / "nan.nii.gz")
    good = tmp_path / "good.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32), np.eye(4)), good)
    raw = good.read_bytes()
    (tmp_path / "truncated.nii.gz").write_bytes(raw[: len(raw) // 2])
    names = ["empty.nii.gz", "notes.nii.gz", "flat.nii.gz", "fmri.nii.gz", "nan.nii.gz", "truncated.nii.gz"]
    for name in names:
        result = npe2.read([str(tmp_path / name)], stack=False, plugin_name="napari-bavis")
        assert result == [(None,)], name
    assert len(shown) == len(names)
    for name, message in zip(names, shown):
        assert name in message and "\n" not in message and "Traceback" not in message
