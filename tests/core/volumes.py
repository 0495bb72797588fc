"""Small synthetic NIfTI files with a marker voxel, for geometry tests."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from napari_bavis.samples import rigid_matrix

LETTER_AXIS = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}


def storage_affine(codes: str, voxel_size, origin=(-30.0, 12.5, -7.0), oblique_deg: float = 0.0) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = 0
    for i, letter in enumerate(codes):
        ras, sign = LETTER_AXIS[letter]
        affine[ras, i] = sign * voxel_size[i]
    affine[:3, 3] = origin
    if oblique_deg:
        affine = rigid_matrix((oblique_deg, 0.4 * oblique_deg, 0.0)) @ affine
    return affine


def marker_image(codes="RAS", voxel_size=(1.0, 1.5, 2.0), shape=(20, 24, 28), marker=(5, 7, 9), oblique_deg=0.0, seed=0):
    rng = np.random.default_rng(seed)
    data = (rng.random(shape) * 10 + 5).astype(np.float32)
    data[marker] = 1000.0
    return nib.Nifti1Image(data, storage_affine(codes, voxel_size, oblique_deg=oblique_deg))
