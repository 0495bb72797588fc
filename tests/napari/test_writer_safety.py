"""The napari writer never replaces the layer's own source file and turns disk problems into one line."""

import os
import stat

import nibabel as nib
import numpy as np
import pytest
from napari.layers import Image

from napari_bavis.napari import _reader, _writer

from volumes import marker_image


def _layer_of(path):
    ((data, kwargs, _),) = _reader.read_scans(str(path))
    return Image(data, **kwargs).as_layer_data_tuple()[:2]


@pytest.fixture
def source(tmp_path):
    (tmp_path / "sub").mkdir()
    src = tmp_path / "scan.nii.gz"
    nib.save(marker_image("LPS"), src)
    return src


@pytest.mark.parametrize("how", ["same", "dotdot", "dotdot-missing", "symlink"])
def test_writer_refuses_to_overwrite_the_source(source, monkeypatch, how):
    shown = []
    monkeypatch.setattr(_writer, "show_error", shown.append)
    before = source.read_bytes()
    data, meta = _layer_of(source)
    target = {"same": source, "dotdot": source.parent / "sub" / ".." / source.name,
              "dotdot-missing": source.parent / "new" / ".." / source.name}.get(how)
    if how == "symlink":
        target = source.parent / "link.nii.gz"
        target.symlink_to(source)
    assert _writer.write_image(str(target), data * 0 + 1, meta) == []
    assert source.read_bytes() == before
    assert len(shown) == 1 and "refusing to overwrite" in shown[0] and "\n" not in shown[0]


def test_writer_target_folder_is_one_line(source, monkeypatch):
    shown = []
    monkeypatch.setattr(_writer, "show_error", shown.append)
    folder = source.parent / "maps.nii.gz"
    folder.mkdir()
    data, meta = _layer_of(source)
    assert _writer.write_image(str(folder), data, meta) == []
    assert len(shown) == 1 and "is a folder" in shown[0]


def test_writer_read_only_folder_is_one_line(source, monkeypatch, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    shown = []
    monkeypatch.setattr(_writer, "show_error", shown.append)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        data, meta = _layer_of(source)
        assert _writer.write_image(str(ro / "x.nii.gz"), data, meta) == []
    finally:
        ro.chmod(0o755)
    assert len(shown) == 1 and "permission denied" in shown[0]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(source, umask):
    old = os.umask(umask)
    try:
        data, meta = _layer_of(source)
        out = source.parent / "copy.nii.gz"
        assert _writer.write_image(str(out), data, meta) == [str(out)]
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert np.asarray(nib.load(out).dataobj).shape == nib.load(source).shape
