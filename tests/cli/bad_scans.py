"""Broken scan files of every kind a cohort folder can hold (a module, not conftest: names must be unique)."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np


def write_bad_scans(folder: Path, good: Path) -> dict[str, Path]:
    """One file per way a scan can be unusable; keys say which."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    raw = gzip.decompress(good.read_bytes())
    files["truncated"] = folder / "truncated.nii.gz"
    files["truncated"].write_bytes(gzip.compress(raw[: len(raw) // 2]))
    files["text"] = folder / "notes.nii.gz"
    files["text"].write_text("subject 7: scanner was replaced, see lab book\n")
    files["2d"] = folder / "slice2d.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 1), dtype=np.float32), np.eye(4)), files["2d"])
    files["4d"] = folder / "fmri4d.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(1).random((10, 10, 10, 3), dtype=np.float32), np.eye(4)), files["4d"])
    files["nan"] = folder / "allnan.nii.gz"
    nib.save(nib.Nifti1Image(np.full((10, 10, 10), np.nan, np.float32), np.eye(4)), files["nan"])
    files["empty"] = folder / "empty.nii.gz"
    files["empty"].write_bytes(b"")
    return files
