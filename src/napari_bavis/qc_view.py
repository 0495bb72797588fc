"""Quality-control pictures a person can judge at a glance: a checkerboard of the registered scan and
the template, and the outline of a mask.

Why: stacking the registered scan (magenta) over the template (green) and the brain mask on top
washes out to pink and cannot be judged. In a checkerboard both images are grey, each scaled to
[0, 1] on its own, in alternating 3-D tiles: where the registration worked, edges (brain outline,
ventricles, sulci) run on unbroken from one tile into the next; where it failed they jump at the
tile borders. Because the tiles alternate along all three axes, every axial, coronal and sagittal
slice shows a 2-D checkerboard. Pure numpy: the napari layer only shows the result.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

#: Tile edge of the checkerboard in millimetres: several gyri wide, small enough for many borders.
TILE_MM = 16.0


def normalised(values: np.ndarray, low: float = 1.0, high: float = 99.5) -> np.ndarray:
    """``values`` scaled to [0, 1] between its ``low`` and ``high`` percentiles (float32, clipped).

    The percentiles come from an even sample of at most about half a million voxels: as good for a
    display range, and a 1 mm volume costs tens of milliseconds instead of a second of GUI time.
    """
    x = np.asarray(values, np.float32)
    flat = x.ravel()
    sample = flat[::max(1, flat.size // 500_000)]
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return np.zeros(x.shape, np.float32)
    lo, hi = np.percentile(finite, [low, high])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((np.nan_to_num(x, nan=lo) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def tile_parity(shape, tile_vox) -> np.ndarray:
    """0/1 per voxel: which image a voxel of the checkerboard comes from (alternating along each axis)."""
    tiles = [np.arange(n) // max(1, int(t)) for n, t in zip(shape, tile_vox)]
    i, j, k = np.ix_(*tiles)
    return ((i + j + k) % 2).astype(np.uint8)


def checkerboard(a: np.ndarray, b: np.ndarray, tile_vox=(8, 8, 8)) -> np.ndarray:
    """``a`` in the even tiles and ``b`` in the odd ones, each normalised to [0, 1] on its own."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"checkerboard needs two 3-D arrays of one shape, got {a.shape} and {b.shape}")
    return np.where(tile_parity(a.shape, tile_vox) == 0, normalised(a), normalised(b)).astype(np.float32)


def registration_checkerboard(registered: nib.Nifti1Image, template: nib.Nifti1Image,
                              tile_mm: float = TILE_MM) -> nib.Nifti1Image:
    """Checkerboard of the registered scan (even tiles) and the template (odd tiles) on their common grid.

    Both come from preprocessing on the model grid; a template on another grid is resampled onto
    the registered scan's (linear).
    """
    reg = np.asarray(registered.dataobj, np.float32)
    tpl = np.asarray(template.dataobj, np.float32)
    if tpl.shape != reg.shape or not np.allclose(template.affine, registered.affine, atol=1e-4):
        from .preprocess.geometry import resample

        tpl = resample(tpl, template.affine, reg.shape, registered.affine)
    voxel = np.sqrt((np.asarray(registered.affine)[:3, :3] ** 2).sum(axis=0))
    tile = np.maximum(1, np.round(tile_mm / np.maximum(voxel, 1e-6))).astype(int)
    return nib.Nifti1Image(checkerboard(reg, tpl, tile), registered.affine)
