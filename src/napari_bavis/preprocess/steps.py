"""The preprocessing steps, in order, each a function of one shared ``State``.

``STEPS`` is the one list: ``preprocess`` runs it, the progress bar's plan is read from it, and
each step writes its own part of the record. A step's ``applies(state)`` says whether it runs for
this scan and spec; it is asked again after every step, because a step can change the plan (brain
extraction that falls back to the template mask needs the registration, so the mask moves after it).

Order, and why: reorient (RAS, lossless) -> brain extraction (before N4 and registration: the
template is skull-stripped) -> N4 (fitted inside the brain) -> affine registration to MNI ->
template brain mask (fallback only) -> the scan onto the model grid -> tissue segmentation ->
smoothing and normalisation of what the model reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import nibabel as nib
import numpy as np

from ..grid import Grid
from . import brain_mask as bm
from .bias import n4_correct
from .input_space import build_model_input
from .orient import canonical, validated_volume
from .register import MIN_REGISTRATION_CORRELATION, correlation_in_mask, register_to_template
from .resample import normalise, scan_to_grid, smooth
from .segment import em_segment, tissue_priors
from .spec import PreprocessSpec
from .templates import template_image_on_grid, template_on_grid

#: Plausible adult intracranial mask volumes (ml); outside them the mask is flagged, not refused.
MASK_VOLUME_RANGE_ML = (900.0, 2300.0)
#: Plausible |det| of the template->scan affine (head size relative to MNI).
#: Measured on 60 real adult brains (ds002748): 0.57-0.86 (brains of 1.1-1.6 l against the template's
#: 1.9 l); this range is about 850-2350 ml of brain.
SCALE_DETERMINANT_RANGE = (0.45, 1.25)
#: A registration that passes but falls below either of these is flagged for a look at the overlay
#: (real adults: raw 0.35-0.61, median 0.55; smoothed 0.62-0.84, median 0.80; docs/preprocess.md).
WEAK_REGISTRATION_CORRELATION = 0.40
WEAK_REGISTRATION_CORRELATION_SMOOTHED = 0.65


@dataclass
class State:
    """What the steps share: the scan as it goes (canonical RAS), the masks, the transform, the record."""

    spec: PreprocessSpec
    image: nib.Nifti1Image
    backend: str | None  # brain extraction: "auto", "deepbet", "stripped", "template" or None
    record: dict
    qc: dict = field(default_factory=lambda: {"warnings": []})
    data: np.ndarray | None = None  # canonical array, bias-corrected once N4 ran
    affine: np.ndarray | None = None
    native_shape: tuple = ()
    native_affine: np.ndarray | None = None
    mask: np.ndarray | None = None  # brain mask on the canonical array
    template_to_scan: np.ndarray = field(default_factory=lambda: np.eye(4))
    det: float = 1.0
    t1_grid: np.ndarray | None = None
    template_mask_grid: np.ndarray | None = None
    grid_mask: np.ndarray | None = None
    brain_grid: np.ndarray | None = None  # the scan's brain inside the template's, on the grid
    registered: np.ndarray | None = None
    registered_t1: nib.Nifti1Image | None = None
    template_t1: nib.Nifti1Image | None = None
    tissues: dict = field(default_factory=dict)
    gm_model: np.ndarray | None = None
    model_input: np.ndarray | None = None

    @property
    def grid(self) -> Grid:
        return self.spec.grid


def reorient(s: State) -> None:
    """Validation and the lossless canonical (RAS) reorientation."""
    native_data, s.native_affine = validated_volume(s.image)
    s.native_shape = tuple(native_data.shape)
    s.data, s.affine = canonical(native_data, s.native_affine)
    s.record["steps"]["reorient"] = {
        "input_shape": list(s.native_shape),
        "input_affine": s.native_affine.tolist(),
        "input_orientation": "".join(nib.aff2axcodes(s.native_affine)),
        "input_voxel_size_mm": np.linalg.norm(s.native_affine[:3, :3], axis=0).tolist(),
        "canonical_affine": s.affine.tolist(),
    }


def extract_brain(s: State) -> None:
    """A stripped scan keeps its own foreground, a head goes through deepbet; when neither works the
    backend becomes "template" and ``template_mask`` runs after the registration."""
    extraction = bm.extract_before_registration(s.data, s.affine, s.backend)
    s.backend, s.mask = extraction.backend, extraction.mask
    s.record["steps"]["brain_extraction"] = extraction.record
    s.qc["skull_stripped_detected"] = extraction.skull_stripped
    s.qc["skull_strip_detection"] = extraction.figures
    s.qc["warnings"].extend(extraction.warnings)


def correct_bias(s: State) -> None:
    """N4, fitted inside the brain mask when extraction gave one."""
    s.data, s.record["steps"]["bias_correction"] = n4_correct(s.data, s.affine, s.mask)
    s.qc["bias_field_range"] = s.record["steps"]["bias_correction"]["field_range"]


def register(s: State) -> None:
    """Affine registration of the (brain of the) scan to the MNI template, or none when declared in MNI."""
    if s.spec.registration == "affine":
        moving = s.data * s.mask if s.mask is not None else s.data
        reg = register_to_template(moving, s.affine)
        s.template_to_scan = reg.template_to_scan
        s.qc["registration_correlation"] = reg.correlation
        s.qc["registration_correlation_smoothed"] = reg.correlation_smoothed
        s.qc["registration_mattes_mi"] = reg.metric
        s.record["steps"]["registration"] = reg.record
    else:
        s.record["steps"]["registration"] = {"method": "none: the scan is declared to be in MNI space"}


def template_mask(s: State) -> None:
    """The fallback brain mask: the template's, carried onto the scan through the registration."""
    s.mask = bm.template_mask(s.data.shape, s.affine, s.template_to_scan)
    s.record["steps"]["brain_extraction"] = {**s.record["steps"].get("brain_extraction", {}),
                                             "method": bm.TEMPLATE_METHOD}


def _qc_of_mask_and_registration(s: State) -> None:
    """Mask volume, head size and registration strength: flagged (warnings), never refused here."""
    qc = s.qc
    if s.mask is not None:
        voxel_ml = abs(np.linalg.det(s.affine[:3, :3])) / 1000.0
        qc["mask_volume_ml"] = float(s.mask.sum() * voxel_ml)
        qc["brain_extraction_backend"] = s.backend
        lo, hi = MASK_VOLUME_RANGE_ML
        if not lo <= qc["mask_volume_ml"] <= hi:
            qc["warnings"].append(
                f"Brain mask volume {qc['mask_volume_ml']:.0f} ml is outside the usual adult range {lo:.0f}-{hi:.0f} ml."
            )
    s.det = float(abs(np.linalg.det(s.template_to_scan[:3, :3])))
    qc["affine_scale_determinant"] = s.det
    if not SCALE_DETERMINANT_RANGE[0] <= s.det <= SCALE_DETERMINANT_RANGE[1]:
        qc["warnings"].append(f"The head is {s.det:.2f} times the template's volume: check the registration.")
    corr, corr_smooth = qc.get("registration_correlation"), qc.get("registration_correlation_smoothed")
    if corr_smooth is not None and (corr < WEAK_REGISTRATION_CORRELATION or corr_smooth < WEAK_REGISTRATION_CORRELATION_SMOOTHED):
        qc["warnings"].append(
            f"Registration is weak (correlation with the template {corr:.2f}, {corr_smooth:.2f} smoothed; usual >= "
            f"{WEAK_REGISTRATION_CORRELATION} and >= {WEAK_REGISTRATION_CORRELATION_SMOOTHED}): "
            f"check the registered scan over the template."
        )


def grid_to_grid_mask(mask: np.ndarray, affine: np.ndarray, grid: Grid, template_to_scan: np.ndarray) -> np.ndarray:
    """A scan-space mask sampled on the model grid (linear, >= 0.5)."""
    return scan_to_grid(mask.astype(np.float32), affine, grid, template_to_scan) >= 0.5


def resample(s: State) -> None:
    """The scan onto the model grid; the grid's brain mask follows the brain-extraction backend."""
    _qc_of_mask_and_registration(s)
    grid = s.grid
    s.template_mask_grid = template_on_grid("mask", grid) >= 0.5
    if s.backend in ("deepbet", "stripped"):
        s.grid_mask = grid_to_grid_mask(s.mask, s.affine, grid, s.template_to_scan)
    else:
        s.grid_mask = s.template_mask_grid
    # The scan's brain mask inside the template's brain: the template's priors are zero outside it, and
    # two brain masks of one brain differ at the rim (deepbet keeps more CSF than a stripping tool did):
    # rim voxels turned into GM and shifted every z-score (a real brain's age by 1.9 y with vs without skull).
    s.brain_grid = s.grid_mask & s.template_mask_grid
    s.t1_grid = scan_to_grid(s.data, s.affine, grid, s.template_to_scan)
    if s.spec.registration == "none":
        # no registration step ran: still measure how MNI-like the scan is, for QC only
        corr = correlation_in_mask(s.t1_grid, np.asarray(template_on_grid("t1", grid)), s.template_mask_grid)
        s.qc["registration_correlation"] = corr
        if corr < MIN_REGISTRATION_CORRELATION:
            s.qc["warnings"].append(f"The scan does not look like it is in MNI space (correlation {corr:.2f}).")
    s.registered = s.t1_grid * s.grid_mask if s.mask is not None else s.t1_grid
    s.registered_t1 = nib.Nifti1Image(s.registered.astype(np.float32), grid.affine)
    s.template_t1 = template_image_on_grid("t1", grid)
    s.record["steps"]["resampling"] = {
        "grid": grid.to_dict(),
        "interpolation": "linear (SimpleITK)",
        "template_to_scan_ras": s.template_to_scan.tolist(),
    }


def segment(s: State) -> None:
    """GM/WM/CSF by EM with the template's priors, inside the brain on the grid; volumes in the scan's ml."""
    spec, grid, qc = s.spec, s.grid, s.qc
    priors = tissue_priors(template_on_grid("gm", grid), template_on_grid("wm", grid), template_on_grid("mask", grid))
    posteriors, s.record["steps"]["segmentation"] = em_segment(s.t1_grid, priors, s.brain_grid & (s.t1_grid > 0))
    s.tissues = {name: posteriors[i] for i, name in enumerate(("gm", "wm", "csf"))}
    voxel_ml = abs(np.linalg.det(grid.affine[:3, :3])) / 1000.0 * s.det
    for name, prob in s.tissues.items():
        qc[f"{name}_volume_ml"] = float(prob.sum() * voxel_ml)
    total = sum(qc[f"{name}_volume_ml"] for name in s.tissues)
    qc["gm_fraction"] = qc["gm_volume_ml"] / total if total > 0 else float("nan")
    s.gm_model = s.tissues["gm"] * s.det if spec.modulation else s.tissues["gm"].copy()
    s.record["steps"]["segmentation"]["modulation"] = (
        {"jacobian_determinant_of_affine": s.det} if spec.modulation else None
    )


def finish_input(s: State) -> None:
    """Smoothing and intensity normalisation of what the model reads (statistics inside the brain)."""
    spec = s.spec
    if spec.input_space is not None and spec.input_kind == "t1":
        # a published model's exact recipe (template grid, statistics, crop): docs/models.md
        s.model_input, norm_record = build_model_input(spec.input_space, s.data, s.affine, s.mask, s.template_to_scan,
                                                       spec.intensity_normalisation, spec.smoothing_fwhm_mm)
    else:
        source = s.registered if spec.input_kind == "t1" else s.gm_model
        smoothed = smooth(source, s.grid, spec.smoothing_fwhm_mm)
        stats_mask = s.brain_grid if s.mask is not None else s.template_mask_grid
        s.model_input, norm_record = normalise(smoothed, spec.intensity_normalisation, stats_mask)
        if spec.input_kind == "t1" and s.mask is not None:
            s.model_input = s.model_input * s.brain_grid
    s.record["steps"]["smoothing_normalisation"] = {
        "input_kind": spec.input_kind,
        "smoothing_fwhm_mm": spec.smoothing_fwhm_mm,
        "smoothing": "separable Gaussian, the filter of nilearn.image.smooth_img" if spec.smoothing_fwhm_mm else None,
        "normalisation": norm_record,
        "statistics_mask": "brain mask on the model grid, inside the template's brain mask",
    }


@dataclass(frozen=True)
class Step:
    name: str  # the name in progress, timings and the record
    run: Callable[[State], None]
    applies: Callable[[State], bool]


def _always(s: State) -> bool:
    return True


STEPS: tuple[Step, ...] = (
    Step("reorient", reorient, _always),
    Step("brain_extraction", extract_brain, lambda s: s.backend in ("auto", "deepbet")),
    Step("bias_correction", correct_bias, lambda s: bool(s.spec.bias_correction)),
    Step("registration", register, _always),
    Step("brain_extraction", template_mask, lambda s: s.backend == "template"),  # the fallback
    Step("resampling", resample, _always),
    Step("segmentation", segment, lambda s: bool(s.spec.segmentation)),
    Step("smoothing_normalisation", finish_input, _always),
)


def planned_names(s: State, done: list[str], position: int) -> list[str]:
    """The progress plan: the steps already run, then those of ``STEPS[position:]`` that apply now."""
    return done + [step.name for step in STEPS[position:] if step.applies(s)]
