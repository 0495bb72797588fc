"""``preprocess``: a scan as it comes from the scanner -> the model's input on its MNI grid.

Every step is driven by a ``PreprocessSpec`` (the model card), timed, recorded, and can be
switched off; ``cancel.is_set()`` is checked before each step. Nothing is written to disk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import nibabel as nib
import numpy as np

from ..errors import Cancelled
from ..grid import Grid
from . import brain_mask as bm
from .bias import n4_correct
from .input_space import build_model_input
from .orient import canonical, validated_volume
from .register import MIN_REGISTRATION_CORRELATION, correlation_in_mask, register_to_template
from .resample import grid_to_scan, normalise, scan_to_grid, smooth
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
class Preprocessed:
    """What ``preprocess`` returns; arrays on ``grid`` are float32 in NIfTI (i, j, k) order."""

    model_input: np.ndarray
    gm_model: np.ndarray | None
    brain_mask: nib.Nifti1Image | None
    registered_t1: nib.Nifti1Image
    template_t1: nib.Nifti1Image
    qc: dict
    timings: dict
    record: dict
    grid: Grid
    template_to_scan: np.ndarray  # 4x4 RAS mm: MNI point -> scan world point
    native_shape: tuple
    native_affine: np.ndarray
    tissues: dict = field(default_factory=dict)  # "gm", "wm", "csf" probabilities on grid (unmodulated)

    def to_native(self, map_on_grid: np.ndarray, order: int = 1) -> np.ndarray:
        """A map on the model grid resampled onto the voxel grid of the scan that was opened.

        Undoes the registration and the reorientation in one resampling (order 0 nearest,
        1 linear, 3 B-spline); voxels that map outside the grid get 0.
        """
        values = np.asarray(map_on_grid, dtype=np.float32)
        if values.shape != tuple(self.grid.shape):
            raise ValueError(f"map shape {values.shape} does not match the model grid {tuple(self.grid.shape)}")
        return grid_to_scan(values, self.grid, self.native_shape, self.native_affine, self.template_to_scan, order)


def _versions() -> dict:
    import nilearn
    import scipy
    import SimpleITK as sitk

    return {
        "SimpleITK": sitk.Version_VersionString(),
        "nibabel": nib.__version__,
        "nilearn": nilearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }


def _plan(spec: PreprocessSpec, backend: str | None) -> list[str]:
    steps = ["reorient"]
    if backend in ("auto", "deepbet", "stripped"):
        steps.append("brain_extraction")
    if spec.bias_correction:
        steps.append("bias_correction")
    steps.append("registration")
    if backend == "template":
        steps.append("brain_extraction")
    steps.append("resampling")
    if spec.segmentation:
        steps.append("segmentation")
    steps.append("smoothing_normalisation")
    return steps


def preprocess(
    image: nib.Nifti1Image,
    spec: PreprocessSpec,
    progress: Callable[[str, int, int], None] | None = None,
    cancel=None,
) -> Preprocessed:
    """Run the steps ``spec`` asks for on ``image`` (see ``docs/preprocess.md``).

    Raises ScanError for an unusable volume, PreprocessError when a step fails (e.g. a
    doubtful registration, naming the QC measure), Cancelled when ``cancel.is_set()``.
    """
    backend = bm.resolve_backend(spec.brain_extraction_backend) if spec.brain_extraction_backend else None
    steps = _plan(spec, backend)
    timings: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}  # process CPU time (all threads): robust to a shared machine
    record: dict = {"spec": spec.to_dict(), "versions": _versions(), "steps": {}}
    qc: dict = {"warnings": []}
    grid = spec.grid
    state: dict = {}
    t_start = time.perf_counter()

    def begin(name: str) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"Preprocessing cancelled before step '{name}'.")
        if progress is not None:
            progress(name, steps.index(name), len(steps))
        state["name"], state["t0"], state["c0"] = name, time.perf_counter(), time.process_time()

    def end() -> None:
        timings[state["name"]] = time.perf_counter() - state["t0"]
        cpu_seconds[state["name"]] = time.process_time() - state["c0"]

    # 1. validation and canonical (RAS) reorientation
    begin("reorient")
    native_data, native_affine = validated_volume(image)
    native_shape = native_data.shape
    data, affine = canonical(native_data, native_affine)
    record["steps"]["reorient"] = {
        "input_shape": list(native_shape),
        "input_affine": native_affine.tolist(),
        "input_orientation": "".join(nib.aff2axcodes(native_affine)),
        "input_voxel_size_mm": np.linalg.norm(native_affine[:3, :3], axis=0).tolist(),
        "canonical_affine": affine.tolist(),
    }
    del native_data
    end()

    # 2. brain extraction before N4 and registration (the template is skull-stripped): a stripped scan
    # keeps its own foreground, a head goes through deepbet; the template mask (3b) is the fallback
    mask = None
    if backend in ("auto", "deepbet"):
        begin("brain_extraction")
        extraction = bm.extract_before_registration(data, affine, backend)
        backend, mask = extraction.backend, extraction.mask
        record["steps"]["brain_extraction"] = extraction.record
        qc["skull_stripped_detected"] = extraction.skull_stripped
        qc["skull_strip_detection"] = extraction.figures
        qc["warnings"].extend(extraction.warnings)
        end()
        if backend == "template":
            steps[:] = _plan(spec, backend)  # the fallback needs the registration: the step moves after it

    # 3. N4 bias-field correction, fitted inside the brain mask when extraction gave one
    if spec.bias_correction:
        begin("bias_correction")
        data, record["steps"]["bias_correction"] = n4_correct(data, affine, mask)
        qc["bias_field_range"] = record["steps"]["bias_correction"]["field_range"]
        end()

    # 4. affine registration to MNI
    begin("registration")
    if spec.registration == "affine":
        moving = data * mask if mask is not None else data
        reg = register_to_template(moving, affine)
        template_to_scan = reg.template_to_scan
        qc["registration_correlation"] = reg.correlation
        qc["registration_correlation_smoothed"] = reg.correlation_smoothed
        qc["registration_mattes_mi"] = reg.metric
        record["steps"]["registration"] = reg.record
    else:
        template_to_scan = np.eye(4)
        record["steps"]["registration"] = {"method": "none: the scan is declared to be in MNI space"}
    end()

    # 3b. template brain extraction (needs the registration)
    if backend == "template":
        begin("brain_extraction")
        mask = bm.template_mask(data.shape, affine, template_to_scan)
        record["steps"]["brain_extraction"] = {**record["steps"].get("brain_extraction", {}), "method": bm.TEMPLATE_METHOD}
        end()

    if mask is not None:
        voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
        qc["mask_volume_ml"] = float(mask.sum() * voxel_ml)
        qc["brain_extraction_backend"] = backend
        lo, hi = MASK_VOLUME_RANGE_ML
        if not lo <= qc["mask_volume_ml"] <= hi:
            qc["warnings"].append(
                f"Brain mask volume {qc['mask_volume_ml']:.0f} ml is outside the usual adult range {lo:.0f}-{hi:.0f} ml."
            )

    det = float(abs(np.linalg.det(template_to_scan[:3, :3])))
    qc["affine_scale_determinant"] = det
    if not SCALE_DETERMINANT_RANGE[0] <= det <= SCALE_DETERMINANT_RANGE[1]:
        qc["warnings"].append(f"The head is {det:.2f} times the template's volume: check the registration.")
    corr, corr_smooth = qc.get("registration_correlation"), qc.get("registration_correlation_smoothed")
    if corr_smooth is not None and (corr < WEAK_REGISTRATION_CORRELATION or corr_smooth < WEAK_REGISTRATION_CORRELATION_SMOOTHED):
        qc["warnings"].append(
            f"Registration is weak (correlation with the template {corr:.2f}, {corr_smooth:.2f} smoothed; usual >= "
            f"{WEAK_REGISTRATION_CORRELATION} and >= {WEAK_REGISTRATION_CORRELATION_SMOOTHED}): "
            f"check the registered scan over the template."
        )

    # 6a. the scan onto the model grid; the grid's brain mask follows the brain extraction backend
    begin("resampling")
    template_mask_grid = template_on_grid("mask", grid) >= 0.5
    if backend in ("deepbet", "stripped"):
        grid_mask = grid_to_grid_mask(mask, affine, grid, template_to_scan)
    else:
        grid_mask = template_mask_grid
    # The scan's brain mask inside the template's brain: the template's priors are zero outside it, and
    # two brain masks of one brain differ at the rim (deepbet keeps more CSF than a stripping tool did):
    # rim voxels turned into GM and shifted every z-score (a real brain's age by 1.9 y with vs without skull).
    brain_grid = grid_mask & template_mask_grid
    t1_grid = scan_to_grid(data, affine, grid, template_to_scan)

    if spec.registration == "none":
        # no registration step ran: still measure how MNI-like the scan is, for QC only
        corr = correlation_in_mask(t1_grid, np.asarray(template_on_grid("t1", grid)), template_mask_grid)
        qc["registration_correlation"] = corr
        if corr < MIN_REGISTRATION_CORRELATION:
            qc["warnings"].append(f"The scan does not look like it is in MNI space (correlation {corr:.2f}).")

    registered = t1_grid * grid_mask if mask is not None else t1_grid
    registered_t1 = nib.Nifti1Image(registered.astype(np.float32), grid.affine)
    template_t1 = template_image_on_grid("t1", grid)
    record["steps"]["resampling"] = {
        "grid": grid.to_dict(),
        "interpolation": "linear (SimpleITK)",
        "template_to_scan_ras": template_to_scan.tolist(),
    }
    end()

    # 5. tissue segmentation
    gm_model = None
    tissues: dict = {}
    if spec.segmentation:
        begin("segmentation")
        priors = tissue_priors(template_on_grid("gm", grid), template_on_grid("wm", grid), template_on_grid("mask", grid))
        seg_mask = brain_grid & (t1_grid > 0)
        posteriors, record["steps"]["segmentation"] = em_segment(t1_grid, priors, seg_mask)
        tissues = {name: posteriors[i] for i, name in enumerate(("gm", "wm", "csf"))}
        voxel_ml = abs(np.linalg.det(grid.affine[:3, :3])) / 1000.0 * det
        for name, prob in tissues.items():
            qc[f"{name}_volume_ml"] = float(prob.sum() * voxel_ml)
        total = sum(qc[f"{name}_volume_ml"] for name in tissues)
        qc["gm_fraction"] = qc["gm_volume_ml"] / total if total > 0 else float("nan")
        gm_model = tissues["gm"] * det if spec.modulation else tissues["gm"].copy()
        record["steps"]["segmentation"]["modulation"] = (
            {"jacobian_determinant_of_affine": det} if spec.modulation else None
        )
        end()

    # 6b. smoothing and intensity normalisation of what the model reads
    begin("smoothing_normalisation")
    if spec.input_space is not None and spec.input_kind == "t1":
        # a published model's exact recipe (template grid, statistics, crop): docs/models.md
        model_input, norm_record = build_model_input(spec.input_space, data, affine, mask, template_to_scan,
                                                     spec.intensity_normalisation, spec.smoothing_fwhm_mm)
    else:
        source = registered if spec.input_kind == "t1" else gm_model
        smoothed = smooth(source, grid, spec.smoothing_fwhm_mm)
        stats_mask = brain_grid if mask is not None else template_mask_grid
        model_input, norm_record = normalise(smoothed, spec.intensity_normalisation, stats_mask)
        if spec.input_kind == "t1" and mask is not None:
            model_input = model_input * brain_grid
    record["steps"]["smoothing_normalisation"] = {
        "input_kind": spec.input_kind,
        "smoothing_fwhm_mm": spec.smoothing_fwhm_mm,
        "smoothing": "separable Gaussian, the filter of nilearn.image.smooth_img" if spec.smoothing_fwhm_mm else None,
        "normalisation": norm_record,
        "statistics_mask": "brain mask on the model grid, inside the template's brain mask",
    }
    end()

    brain_mask_img = None
    if mask is not None:
        # back into the input's own voxel order (exact: the canonical step only flips/permutes axes)
        canon = nib.Nifti1Image(mask, affine)
        brain_mask_img = canon.as_reoriented(
            nib.orientations.ornt_transform(
                nib.orientations.io_orientation(affine), nib.orientations.io_orientation(native_affine)
            )
        )
        brain_mask_img = nib.Nifti1Image(np.asarray(brain_mask_img.dataobj, dtype=np.uint8), native_affine)

    timings["total"] = time.perf_counter() - t_start
    if cancel is not None and cancel.is_set():
        raise Cancelled("Preprocessing cancelled.")
    if progress is not None:
        progress("done", len(steps), len(steps))
    record["qc"] = qc
    record["timings_s"] = dict(timings)
    record["cpu_seconds"] = dict(cpu_seconds)
    return Preprocessed(
        model_input=np.ascontiguousarray(model_input, dtype=np.float32),
        gm_model=None if gm_model is None else gm_model.astype(np.float32),
        brain_mask=brain_mask_img,
        registered_t1=registered_t1,
        template_t1=template_t1,
        qc=qc,
        timings=timings,
        record=record,
        grid=grid,
        template_to_scan=template_to_scan,
        native_shape=tuple(native_shape),
        native_affine=native_affine,
        tissues=tissues,
    )


def grid_to_grid_mask(mask: np.ndarray, affine: np.ndarray, grid: Grid, template_to_scan: np.ndarray) -> np.ndarray:
    """A scan-space mask sampled on the model grid (linear, >= 0.5)."""
    return scan_to_grid(mask.astype(np.float32), affine, grid, template_to_scan) >= 0.5
