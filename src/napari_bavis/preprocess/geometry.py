"""Bridges between nibabel (RAS mm, array axes i, j, k) and SimpleITK (LPS mm, array axes k, j, i).

Every transform kept by this package is a 4x4 matrix in RAS millimetres mapping template
(MNI) points to the scan's world points; SimpleITK gets the LPS conjugate of it.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

#: RAS <-> LPS flips the first two world axes.
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])

INTERPOLATORS = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}


def _geometry(affine: np.ndarray):
    affine = np.asarray(affine, float)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction_lps = (_FLIP[:3, :3] @ affine[:3, :3]) / spacing
    origin_lps = _FLIP[:3, :3] @ affine[:3, 3]
    return tuple(spacing.tolist()), tuple(origin_lps.tolist()), tuple(direction_lps.ravel().tolist())


def to_sitk(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """Float32 SimpleITK image with the same world geometry as ``(array, affine)``."""
    return _placed(sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array, np.float32).transpose(2, 1, 0))), affine)


def from_sitk(img: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(array in i, j, k order, RAS affine) of a SimpleITK image."""
    array = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    spacing = np.asarray(img.GetSpacing())
    direction_lps = np.asarray(img.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _FLIP[:3, :3] @ direction_lps * spacing
    affine[:3, 3] = _FLIP[:3, :3] @ np.asarray(img.GetOrigin())
    return np.ascontiguousarray(array), affine


def ras_to_sitk_transform(matrix_ras: np.ndarray) -> sitk.AffineTransform:
    """SimpleITK affine transform equal to a 4x4 RAS-mm matrix."""
    m = _FLIP @ np.asarray(matrix_ras, float) @ _FLIP
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(tuple(m[:3, :3].ravel().tolist()))
    tx.SetTranslation(tuple(m[:3, 3].tolist()))
    return tx


def sitk_transform_to_ras(tx) -> np.ndarray:
    """4x4 RAS-mm matrix of a SimpleITK matrix-offset transform (Euler, Affine, ...)."""
    tx = sitk.AffineTransform(tx) if not isinstance(tx, sitk.AffineTransform) else tx
    a = np.asarray(tx.GetMatrix()).reshape(3, 3)
    c = np.asarray(tx.GetCenter())
    t = np.asarray(tx.GetTranslation())
    m = np.eye(4)
    m[:3, :3] = a
    m[:3, 3] = t + c - a @ c
    return _FLIP @ m @ _FLIP


def resample_mask(mask: np.ndarray, affine: np.ndarray, out_shape, out_affine: np.ndarray) -> np.ndarray:
    """A binary mask on another grid (nearest neighbour, False outside), resampled as 8-bit pixels:
    a 1 mm brain mask onto an oblique scan's display grid in 0.1 s instead of 0.5 s as float32."""
    src = _placed(sitk.GetImageFromArray(np.ascontiguousarray((np.asarray(mask) > 0).astype(np.uint8).transpose(2, 1, 0))), affine)
    f = _resampler(out_shape, out_affine, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return np.ascontiguousarray(sitk.GetArrayFromImage(f.Execute(src)).transpose(2, 1, 0)) > 0


def _placed(image: sitk.Image, affine: np.ndarray) -> sitk.Image:
    """``image`` given the world geometry (spacing, origin, direction) of the RAS ``affine``."""
    spacing, origin, direction = _geometry(affine)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def _resampler(out_shape, out_affine: np.ndarray, interpolator, default, pixel_type) -> sitk.ResampleImageFilter:
    """A SimpleITK resampler onto the grid ``(out_shape, out_affine)``."""
    spacing, origin, direction = _geometry(out_affine)
    f = sitk.ResampleImageFilter()
    f.SetSize(tuple(int(s) for s in out_shape))
    f.SetOutputSpacing(spacing)
    f.SetOutputOrigin(origin)
    f.SetOutputDirection(direction)
    f.SetInterpolator(interpolator)
    f.SetDefaultPixelValue(default)
    f.SetOutputPixelType(pixel_type)
    return f


def resample(
    array: np.ndarray,
    affine: np.ndarray,
    out_shape,
    out_affine: np.ndarray,
    out_to_in_ras: np.ndarray | None = None,
    order: int = 1,
    default: float = 0.0,
) -> np.ndarray:
    """Resample ``(array, affine)`` onto the grid ``(out_shape, out_affine)``.

    ``out_to_in_ras`` maps world points of the output grid to world points of the input
    image (identity when both live in the same world). SimpleITK does the interpolation.
    A 4-D ``array`` (C, I, J, K) is a stack of volumes on one grid, resampled as one vector
    image: the output points are mapped once for all of them (C maps cost little more than one).
    """
    if order not in INTERPOLATORS:
        raise ValueError(f"interpolation order must be one of {sorted(INTERPOLATORS)}, got {order}")
    stacked = np.asarray(array).ndim == 4
    if stacked:
        src = _placed(sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array, np.float32).transpose(3, 2, 1, 0)),
                                             isVector=True), affine)
    else:
        src = to_sitk(array, affine)
    f = _resampler(out_shape, out_affine, INTERPOLATORS[order], float(default),
                   sitk.sitkVectorFloat32 if stacked else sitk.sitkFloat32)
    if out_to_in_ras is not None:
        f.SetTransform(ras_to_sitk_transform(out_to_in_ras))
    out = sitk.GetArrayFromImage(f.Execute(src))
    if stacked and out.ndim == 3:  # a one-volume stack comes back without its component axis
        out = out[..., None]
    return np.ascontiguousarray(out.transpose(3, 2, 1, 0) if stacked else out.transpose(2, 1, 0))
