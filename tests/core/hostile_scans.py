"""Hostile or awkward scan files (issue 14), built from their descriptions; a module, not conftest.

``write_hostile_scans(folder)`` returns {key: (path, words the one-line message must hold)}; words
None means the file must load (a correct result, not an error)."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import nibabel as nib
import numpy as np


def _head(shape=(48, 56, 48), seed=0) -> np.ndarray:
    """A bright ellipsoid "head" in dark noise (positive intensities, like a T1)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    inside = (grid**2).sum(0) < 0.7
    return (rng.random(shape) * 5 + 300 * inside).astype(np.float32)


def _save(path: Path, data, affine=None, **header) -> Path:
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine)
    for key, value in header.items():
        img.header[key] = value
    nib.save(img, path)
    return path


def _patch_header(path: Path, **fields) -> Path:
    """Rewrite header fields exactly as given (nibabel's writer would 'fix' them)."""
    raw = path.read_bytes()
    gz = path.name.endswith(".gz")
    body = bytearray(gzip.decompress(raw) if gz else raw)
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(body[:348])), check=False)
    for key, value in fields.items():
        if key == "pixdim":
            hdr["pixdim"][1:4] = value
        else:
            hdr[key] = value
    body[:348] = hdr.binaryblock
    path.write_bytes(gzip.compress(bytes(body)) if gz else bytes(body))
    return path


def write_gzip_bomb(path: Path, side: int = 768) -> Path:
    """side³ uint8 zeros, gzip-compressed while streaming (a few MB on disk, never in memory)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((side,) * 3)
    hdr.set_data_dtype(np.uint8)
    hdr.set_sform(np.eye(4), 1)
    hdr.set_qform(np.eye(4), 1)
    hdr["vox_offset"] = 352
    chunk = bytes(32 * 2**20)
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(hdr.binaryblock + b"\0" * 4)
        left = side**3
        while left > 0:
            handle.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
    return path


def write_hostile_scans(folder: Path, bomb: bool = True) -> dict[str, tuple[Path, str | None]]:
    folder.mkdir(parents=True, exist_ok=True)
    head = _head()
    cases: dict[str, tuple[Path, str | None]] = {}
    cases["float32-max"] = (_save(folder / "huge_values.nii.gz", head * np.float32(1e36)), "intensities reach")
    scaled = _save(folder / "huge_slope.nii.gz", (head / 10).astype(np.int16))
    cases["slope-huge"] = (_patch_header(scaled, scl_slope=3e35, scl_inter=0.0), "intensities reach")
    cases["no-orientation"] = (_patch_header(_save(folder / "no_orient.nii.gz", head), sform_code=0, qform_code=0),
                               "no orientation")
    cases["pixdim-0"] = (_patch_header(_save(folder / "pixdim0.nii", head), pixdim=(0.0, 2.0, 2.0)), "voxel size")
    cases["pixdim-nan"] = (_patch_header(_save(folder / "pixdimnan.nii", head), pixdim=(np.nan, 2.0, 2.0)), "voxel size")
    cases["claims-10000"] = (_patch_header(_save(folder / "claims_huge.nii.gz", head), dim=[3, 10000, 10000, 10000, 1, 1, 1, 1]),
                             "at most 134 M")
    truncated = _save(folder / "truncated.nii", head)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    cases["truncated-nii"] = (truncated, "truncated")
    datatype1 = _save(folder / "binary.nii", (head > 100).astype(np.uint8))
    cases["datatype-1"] = (_patch_header(datatype1, datatype=1, bitpix=1), "not supported")
    if bomb:
        cases["gzip-bomb"] = (write_gzip_bomb(folder / "bomb.nii.gz"), "768×768×768 voxels")
    if os.path.exists("/dev/zero"):
        link = folder / "zero.nii"
        link.symlink_to("/dev/zero")
        cases["dev-zero"] = (link, "a device")
    if hasattr(os, "mkfifo"):
        fifo = folder / "pipe.nii.gz"
        os.mkfifo(fifo)
        cases["fifo"] = (fifo, "named pipe")
    # awkward but fine: a negative-only copy is viewable (refused by preprocessing, see test_limits)
    cases["negative-only"] = (_save(folder / "negative.nii.gz", -head), None)
    aniso = np.diag([0.5, 0.5, 8.0, 1.0])
    cases["anisotropic"] = (_save(folder / "thick_slices.nii.gz", _head((372, 448, 24)), aniso), None)
    return cases
