"""The MNI152 2009 templates that ship inside nilearn's wheel (no download), cached per grid."""

from __future__ import annotations

from functools import lru_cache

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


@lru_cache(maxsize=8)
def template(kind: str, resolution: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(float32 array, affine) of nilearn's MNI152 2009 ``kind`` ("t1", "gm", "wm", "mask") at 1 or 2 mm."""
    from nilearn import datasets

    img = getattr(datasets, _LOADERS[kind])(resolution=resolution)
    data = np.asarray(img.get_fdata(dtype=np.float32))
    data.setflags(write=False)
    return data, np.asarray(img.affine, float)


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
