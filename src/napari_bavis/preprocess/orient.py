"""Step 1: accept only a finite, non-constant 3D scalar volume with a usable affine; reorient to RAS."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from ..errors import ScanError
from ..limits import check_field_of_view, check_intensity_range, check_positive_signal


def _shape_text(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def validated_volume(image) -> tuple[np.ndarray, np.ndarray]:
    """(float32 3D array, affine) of ``image``, or ScanError saying in one line why it cannot be used.

    A 4D image holding a single volume (trailing axes of length 1) is accepted as 3D.
    """
    if not hasattr(image, "affine") or not hasattr(image, "dataobj"):
        raise ScanError(f"Expected a NIfTI image, got {type(image).__name__}.")
    shape = tuple(int(s) for s in image.shape)
    spatial = shape[:3]
    extra = shape[3:]
    if len(shape) < 3:
        raise ScanError(f"The image is {len(shape)}D (shape {_shape_text(shape)}); a 3D volume is needed.")
    if any(s != 1 for s in extra):
        n = int(np.prod(extra))
        raise ScanError(
            f"The image is {len(shape)}D with {n} volumes (shape {_shape_text(shape)}); "
            "choose a single 3D volume."
        )
    dtype = image.get_data_dtype()
    if dtype.fields is not None or np.issubdtype(dtype, np.complexfloating):
        raise ScanError(f"The image holds {dtype} voxels (RGB or complex); a scalar intensity volume is needed.")
    affine = np.asarray(image.affine, float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise ScanError("The image's voxel-to-world affine is singular or not finite; its geometry is unknown.")
    check_field_of_view(spatial, np.linalg.norm(affine[:3, :3], axis=0))  # millimetres, not voxel counts
    data = np.asarray(image.get_fdata(dtype=np.float32)).reshape(spatial)
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(data.size - np.count_nonzero(finite))
        raise ScanError(f"The volume contains {bad} non-finite voxels (NaN or Inf).")
    lo, hi = float(data.min()), float(data.max())
    if hi == 0.0 and lo == 0.0:
        raise ScanError("The volume is empty: every voxel is 0.")
    if hi == lo:
        raise ScanError(f"The volume is constant (every voxel is {hi:g}); there is no image to process.")
    check_intensity_range(lo, hi)
    check_positive_signal(data)
    return data, affine


def canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest-RAS reorientation (axis flips/permutations only: no interpolation)."""
    img = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    return np.ascontiguousarray(np.asarray(img.dataobj, dtype=np.float32)), np.asarray(img.affine, float)
