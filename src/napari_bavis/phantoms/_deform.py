"""Smooth diffeomorphic deformations on the coarse world grid, and warping of maps through them.

A deformation is a backward map phi(x) = x + u(x) in RAS mm: the phantom's value at x is the
(modified) template's value at phi(x). u is the exponential of a stationary velocity field
(scaling and squaring), so large ventricular growth never folds tissue.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..grid import Grid
from ._anatomy import COARSE

_SQUARINGS = 4


def exponentiate(velocity: np.ndarray) -> np.ndarray:
    """Displacement (3, *COARSE.shape) in mm of the flow of ``velocity`` (mm, same shape) after unit time."""
    step = np.asarray(COARSE.voxel_size, np.float32)[:, None, None, None]
    u = velocity.astype(np.float32) / 2**_SQUARINGS
    grid_idx = np.indices(COARSE.shape, dtype=np.float32)
    for _ in range(_SQUARINGS):
        at = grid_idx + u / step
        u = u + np.stack([ndi.map_coordinates(c, at, order=1, mode="nearest", output=np.float32) for c in u])
    return u


def displacement_on(u_coarse: np.ndarray, grid: Grid) -> np.ndarray:
    """The coarse displacement (mm) interpolated (linearly) at every voxel of ``grid``."""
    matrix = np.linalg.inv(COARSE.affine) @ grid.affine
    return np.stack(
        [
            ndi.affine_transform(
                c, matrix[:3, :3], matrix[:3, 3], output_shape=tuple(grid.shape), order=1, mode="nearest", output=np.float32
            )
            for c in u_coarse
        ]
    )


def sample_coordinates(u_mm: np.ndarray, grid: Grid) -> np.ndarray:
    """Voxel coordinates (3, *shape) on ``grid`` of phi(x) for every voxel x of ``grid``."""
    to_vox = np.linalg.inv(grid.affine[:3, :3]).astype(np.float32)
    coords = np.indices(grid.shape, dtype=np.float32)
    if np.allclose(to_vox, np.diag(np.diag(to_vox))):
        coords += u_mm * np.diag(to_vox)[:, None, None, None]
    else:
        coords += np.einsum("ij,j...->i...", to_vox, u_mm)
    return coords


def warp(volume: np.ndarray, coords: np.ndarray, order: int = 1) -> np.ndarray:
    """``volume`` sampled at ``coords`` (zero outside); order 0 for label volumes."""
    out = np.float32 if order > 0 else volume.dtype
    return ndi.map_coordinates(volume, coords, order=order, mode="constant", cval=0, output=out)


def random_velocity(noise: np.ndarray, brain: np.ndarray, rms_mm: float, smoothness_mm: float = 12.0) -> np.ndarray:
    """Smooth random velocity from white ``noise`` (3, *COARSE.shape), scaled to ``rms_mm`` over the brain."""
    sigma = smoothness_mm / np.asarray(COARSE.voxel_size)
    field = np.stack([ndi.gaussian_filter(n, sigma, mode="nearest") for n in noise.astype(np.float32)])
    rms = float(np.sqrt((field[:, brain] ** 2).sum(0).mean()))
    return field * (rms_mm / max(rms, 1e-12))
