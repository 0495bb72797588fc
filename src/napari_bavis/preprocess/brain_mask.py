"""Step 3: brain extraction, chosen for the scan at hand.

A scan that is already skull-stripped keeps its own foreground (stripping it again only
erodes cortex); a head with skull goes through deepbet (MIT; its TorchScript weights ship in
its wheel, so nothing is downloaded; CPU, a few seconds); nilearn's MNI brain mask carried
back through the registration is only a fallback, because on heads with skull it follows the
template's outline and cuts into the patient's cortex (measured Dice 0.887 against
FreeSurfer's mask, deepbet 0.960).
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from functools import lru_cache

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..errors import PreprocessError
from .geometry import resample
from .templates import template

STRIPPED_METHOD = "already skull-stripped: the scan's own non-zero voxels"
DEEPBET_METHOD = "deepbet CNN (CPU)"
TEMPLATE_METHOD = "nilearn MNI152 2009 brain mask mapped into the scan through the affine registration"

#: Foreground volume (ml) a skull-stripped adult scan can have; a head with scalp and skull is larger.
STRIPPED_FOREGROUND_ML = (800.0, 2400.0)
#: Below this, the tissue a few mm under the foreground's surface is darker than the surface
#: itself: a bright scalp over a dark skull. A stripped brain only gets brighter inwards (GM -> WM).
MIN_STRIPPED_DIP_RATIO = 0.9
#: Median intensity (fraction of the 99th percentile) just outside the foreground: about 0 when stripped.
MAX_STRIPPED_OUTSIDE = 0.1
#: Depth bands (mm under the foreground's surface) of the intensity profile.
DEPTH_BANDS_MM = ((0, 3), (3, 6), (6, 9), (9, 12), (12, 15), (15, 20))
_PEAK_DEPTH_MM = 12  # the scalp lies within this depth; the dip is looked for below the peak, down to 20 mm
_DETECTION_VOXEL_MM = 2.0  # detection runs on a strided copy: a few tenths of a second on a 1 mm scan


def deepbet_available() -> bool:
    return importlib.util.find_spec("deepbet") is not None


def resolve_backend(requested: str) -> str:
    """The requested backend ("auto", "deepbet", "template"), checked: deepbet asked for must be importable."""
    if requested == "deepbet" and not deepbet_available():
        raise PreprocessError("Brain extraction with deepbet was asked for, but deepbet is not installed.")
    return requested


def _background_level(data: np.ndarray) -> float:
    """Noise level of the air: the median over the 8 corner blocks of their 95th percentile (0 when stripped to 0)."""
    n = [max(1, s // 8) for s in data.shape]
    ends = [(slice(0, k), slice(-k, None)) for k in n]
    return float(np.median([np.percentile(data[x, y, z], 95) for x in ends[0] for y in ends[1] for z in ends[2]]))


def _largest_filled(mask: np.ndarray) -> np.ndarray:
    """Holes filled first (a scalp shell then encloses skull and brain), then the largest component
    (6-connected). fill_voids and cc3d (both installed with deepbet) give scipy's
    ``binary_fill_holes`` + ``label`` result about 6 times faster on a 15-million-voxel scan."""
    import cc3d
    import fill_voids

    filled = fill_voids.fill(np.asarray(mask, bool), in_place=False)
    return cc3d.largest_k(filled, k=1, connectivity=6) > 0


def is_skull_stripped(data: np.ndarray, affine: np.ndarray) -> tuple[bool, dict]:
    """(whether ``data`` is already skull-stripped, the figures that decided it).

    Pure and fast (it reads a copy strided to about 2 mm). The foreground (above the air's
    noise and 5 % of the 99th percentile; largest component, holes filled) of a stripped scan
    is brain-sized (``STRIPPED_FOREGROUND_ML``), has a (near) zero background right around it,
    and its intensity only rises with depth under its surface; a head has a bright scalp over a
    dark skull, so the profile dips (``dip_ratio`` < ``MIN_STRIPPED_DIP_RATIO``) and it is larger.
    """
    vox = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    stride = [max(1, int(_DETECTION_VOXEL_MM // v)) for v in vox]
    coarse = np.asarray(data[:: stride[0], :: stride[1], :: stride[2]], dtype=np.float32)
    vox = vox * stride
    positive = coarse[coarse > 0]
    p99 = float(np.percentile(positive, 99)) if positive.size else 0.0
    if p99 <= 0:
        return False, {"reason": "no positive intensities"}
    background = _background_level(coarse)
    foreground = _largest_filled(coarse > max(2.0 * background, 0.05 * p99))
    foreground_ml = float(foreground.sum() * np.prod(vox) / 1000.0)
    depth = ndimage.distance_transform_edt(foreground, sampling=vox)
    profile = [
        float(np.median(coarse[band]) / p99) if (band := (depth > lo) & (depth <= hi)).any() else float("nan")
        for lo, hi in DEPTH_BANDS_MM
    ]
    outer = [v for (lo, hi), v in zip(DEPTH_BANDS_MM, profile) if hi <= _PEAK_DEPTH_MM]
    dip_ratio = float("nan")  # stays NaN for a foreground too thin to have a profile: not stripped
    if np.isfinite(outer).any():
        peak_at = int(np.nanargmax(outer))
        below = [v for v in profile[peak_at + 1 :] if np.isfinite(v)]
        if below and profile[peak_at] > 0:
            dip_ratio = float(min(below) / profile[peak_at])
    shell = ndimage.binary_dilation(foreground, iterations=max(1, int(round(4.0 / vox.mean())))) & ~foreground
    outside = float(np.median(coarse[shell]) / p99) if shell.any() else 0.0

    lo_ml, hi_ml = STRIPPED_FOREGROUND_ML
    checks = {
        "brain-sized foreground": lo_ml <= foreground_ml <= hi_ml,
        "no bright shell over a dark layer": bool(np.isfinite(dip_ratio) and dip_ratio >= MIN_STRIPPED_DIP_RATIO),
        "near-zero background around it": outside <= MAX_STRIPPED_OUTSIDE,
    }
    stripped = all(checks.values())
    failed = [name for name, ok in checks.items() if not ok]
    figures = {
        "foreground_ml": round(foreground_ml, 1),
        "zero_fraction": round(float(np.mean(coarse <= 0)), 4),
        "background_level": round(background / p99, 4),
        "outside_median": round(outside, 4),
        "depth_profile": [round(v, 3) for v in profile],
        "depth_bands_mm": [list(b) for b in DEPTH_BANDS_MM],
        "dip_ratio": round(dip_ratio, 3),
        "reason": "all checks passed" if stripped else "failed: " + ", ".join(failed),
    }
    return stripped, figures


def foreground_mask(data: np.ndarray) -> np.ndarray:
    """uint8 mask of a stripped scan's own foreground: above the air's level (0 when the air is 0),
    holes filled, largest connected component."""
    return _largest_filled(data > 2.0 * _background_level(data)).astype(np.uint8)


def template_mask(shape, affine: np.ndarray, template_to_scan: np.ndarray) -> np.ndarray:
    """uint8 mask on the grid (shape, affine): the MNI brain mask mapped through the registration."""
    mask, mask_affine = template("mask", 1)
    scan_to_template = np.linalg.inv(template_to_scan)
    soft = resample(mask, mask_affine, shape, affine, out_to_in_ras=scan_to_template, order=1)
    return (soft >= 0.5).astype(np.uint8)


@lru_cache(maxsize=1)
def _deepbet_model():
    """deepbet's two TorchScript networks, loaded once from its wheel onto the CPU."""
    from deepbet.bet import BrainExtraction

    return BrainExtraction(no_gpu=True)


def deepbet_mask(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """uint8 mask on the scan's own grid from deepbet's CNN on the CPU (nothing is written to disk)."""
    _, mask_img, _ = _deepbet_model().run(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine))
    return (np.asarray(mask_img.dataobj) > 0).astype(np.uint8).reshape(data.shape)


def template_fallback_warning(reason: str) -> str:
    return (
        f"Brain extraction fell back to the registered template mask ({reason}); "
        "it follows the template's outline and may cut into the cortex."
    )


@dataclass
class Extraction:
    """What brain extraction before registration decided. ``mask`` is None when the template
    mask has to be made after the registration (``backend == "template"``)."""

    backend: str  # "stripped", "deepbet" or "template"
    mask: np.ndarray | None
    record: dict
    skull_stripped: bool
    figures: dict
    warnings: list = field(default_factory=list)


def extract_before_registration(data: np.ndarray, affine: np.ndarray, requested: str) -> Extraction:
    """Brain extraction for ``requested`` "auto" or "deepbet" on the (bias-corrected) canonical scan.

    "auto": a stripped scan keeps its own foreground; otherwise deepbet, and when deepbet is not
    importable or raises, the template fallback (with a warning). "deepbet" runs deepbet on any
    scan and turns its failure into a PreprocessError.
    """
    t0 = time.perf_counter()
    stripped, figures = is_skull_stripped(data, affine)
    record = {"skull_stripped_detected": stripped, "detection": figures, "detection_s": time.perf_counter() - t0}
    if requested == "auto" and stripped:
        return Extraction("stripped", foreground_mask(data), {"method": STRIPPED_METHOD, **record}, stripped, figures)
    t0 = time.perf_counter()
    try:
        if not deepbet_available():
            raise ImportError("deepbet is not installed")
        mask = deepbet_mask(data, affine)
    except Exception as err:  # deepbet cannot run here: say why, keep going with the template
        reason = f"deepbet could not run: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")
        if requested == "deepbet":
            raise PreprocessError(f"Brain extraction with deepbet failed ({reason}).") from None
        record.update(method=TEMPLATE_METHOD, fallback_reason=reason, deepbet_attempt_s=time.perf_counter() - t0)
        return Extraction("template", None, record, stripped, figures, [template_fallback_warning(reason)])
    record.update(method=DEEPBET_METHOD, deepbet_s=time.perf_counter() - t0)
    return Extraction("deepbet", mask, record, stripped, figures)
