"""Step 3: brain extraction. deepbet (its CNN weights ship in its wheel) when importable, else
nilearn's MNI brain mask carried back into the scan through the registration."""

from __future__ import annotations

import importlib.util

import nibabel as nib
import numpy as np

from ..errors import PreprocessError
from .geometry import resample
from .templates import template


def deepbet_available() -> bool:
    return importlib.util.find_spec("deepbet") is not None


def resolve_backend(requested: str) -> str:
    """"deepbet" or "template" for a requested backend ("auto", "deepbet", "template")."""
    if requested == "auto":
        return "deepbet" if deepbet_available() else "template"
    if requested == "deepbet" and not deepbet_available():
        raise PreprocessError("Brain extraction with deepbet was asked for, but deepbet is not installed.")
    return requested


def template_mask(shape, affine: np.ndarray, template_to_scan: np.ndarray) -> np.ndarray:
    """uint8 mask on the grid (shape, affine): the MNI brain mask mapped through the registration."""
    mask, mask_affine = template("mask", 1)
    scan_to_template = np.linalg.inv(template_to_scan)
    soft = resample(mask, mask_affine, shape, affine, out_to_in_ras=scan_to_template, order=1)
    return (soft >= 0.5).astype(np.uint8)


def deepbet_mask(data: np.ndarray, affine: np.ndarray) -> np.ndarray:  # pragma: no cover - needs deepbet
    """uint8 mask on the scan's own grid from deepbet's CNN on the CPU (nothing is written to disk)."""
    from deepbet.bet import BrainExtraction

    _, mask_img, _ = BrainExtraction(no_gpu=True).run(nib.Nifti1Image(data, affine))
    return (np.asarray(mask_img.dataobj) > 0).astype(np.uint8).reshape(data.shape)
