"""The MNI152 2009 templates that ship inside nilearn's wheel (no download), cached per grid."""

from __future__ import annotations

import os
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import nibabel as nib
import numpy as np

from ..grid import Grid
from .geometry import resample

_LOADERS = {
    "t1": "load_mni152_template",
    "gm": "load_mni152_gm_template",
    "wm": "load_mni152_wm_template",
    "mask": "load_mni152_brain_mask",
}


def template_cache_dir() -> Path:
    """Where derived template arrays are kept between runs (``$NAPARI_BAVIS_TEMPLATE_CACHE`` overrides).

    Importing ``nilearn.datasets`` costs about 2 s and resampling each template to 2 mm about
    0.8 s: paid on every process start they were a third of a real scan's analysis time. The
    arrays are generated locally from nilearn's own files, never downloaded.
    """
    env = os.environ.get("NAPARI_BAVIS_TEMPLATE_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-bavis")) / "templates"


def _from_nilearn(kind: str, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    from nilearn import datasets

    img = getattr(datasets, _LOADERS[kind])(resolution=resolution)
    return np.asarray(img.get_fdata(dtype=np.float32)), np.asarray(img.affine, float)


def _store(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Atomic and best effort: a read-only or full cache folder only costs speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        from ..outputs import mkstemp_shared

        fd, tmp = mkstemp_shared(dir=path.parent, suffix=".tmp.npz")
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, data=data, affine=affine)
        os.replace(tmp, path)
    except OSError:
        pass


@lru_cache(maxsize=8)
def template(kind: str, resolution: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(float32 array, affine) of nilearn's MNI152 2009 ``kind`` ("t1", "gm", "wm", "mask") at 1 or 2 mm.

    Exactly nilearn's arrays; kept in :func:`template_cache_dir` keyed by nilearn's version.
    """
    if kind not in _LOADERS:
        raise KeyError(f"unknown template {kind!r}")
    path = template_cache_dir() / f"mni152-{kind}-{int(resolution)}mm-nilearn{version('nilearn')}.npz"
    try:
        with np.load(path) as z:
            data, affine = z["data"].astype(np.float32), z["affine"].astype(float)
    except (OSError, ValueError, KeyError):
        data, affine = _from_nilearn(kind, resolution)
        _store(path, data, affine)
    data.setflags(write=False)
    return data, affine


def _source_resolution(grid: Grid) -> int:
    return 2 if min(grid.voxel_size) >= 2.0 else 1


@lru_cache(maxsize=16)
def template_on_grid(kind: str, grid: Grid) -> np.ndarray:
    """Template ``kind`` resampled (linearly) onto a model grid in MNI space; read-only."""
    data, affine = template(kind, _source_resolution(grid))
    out = resample(data, affine, grid.shape, grid.affine, order=1)
    out.setflags(write=False)
    return out


def template_image_on_grid(kind: str, grid: Grid) -> nib.Nifti1Image:
    return nib.Nifti1Image(np.array(template_on_grid(kind, grid)), grid.affine)
