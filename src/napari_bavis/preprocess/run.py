"""``preprocess``: a scan as it comes from the scanner -> the model's input on its MNI grid.

The steps are the ordered list ``steps.STEPS``, each driven by a ``PreprocessSpec`` (the model
card); this module runs them, times them (wall and CPU), reports progress and checks
``cancel.is_set()`` before each. Nothing is written to disk.
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
from .resample import grid_to_scan
from .spec import PreprocessSpec
from .steps import (  # noqa: F401  (QC constants and grid_to_grid_mask: importable from here as before)
    MASK_VOLUME_RANGE_ML, SCALE_DETERMINANT_RANGE, STEPS, WEAK_REGISTRATION_CORRELATION,
    WEAK_REGISTRATION_CORRELATION_SMOOTHED, State, grid_to_grid_mask, planned_names, reorient,
)

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


def preprocess(
    image: nib.Nifti1Image,
    spec: PreprocessSpec,
    progress: Callable[[str, int, int], None] | None = None,
    cancel=None,
) -> Preprocessed:
    """Run the steps ``spec`` asks for on ``image`` (``steps.STEPS``; see ``docs/preprocess.md``).

    Raises ScanError for an unusable volume, PreprocessError when a step fails (e.g. a
    doubtful registration, naming the QC measure), Cancelled when ``cancel.is_set()``.
    """
    backend = bm.resolve_backend(spec.brain_extraction_backend) if spec.brain_extraction_backend else None
    state = State(spec=spec, image=image, backend=backend,
                  record={"spec": spec.to_dict(), "versions": _versions(), "steps": {}})
    timings: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}  # process CPU time (all threads): robust to a shared machine
    done: list[str] = []
    t_start = time.perf_counter()
    for position, step in enumerate(STEPS):
        if not step.applies(state):
            continue
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"Preprocessing cancelled before step '{step.name}'.")
        if progress is not None:
            names = planned_names(state, done, position)
            progress(step.name, len(done), len(names))
        t0, c0 = time.perf_counter(), time.process_time()
        step.run(state)
        if step.run is reorient:
            state.image = None  # the canonical array is all the later steps read
        timings[step.name] = time.perf_counter() - t0
        cpu_seconds[step.name] = time.process_time() - c0
        done.append(step.name)

    brain_mask_img = None
    if state.mask is not None:
        # back into the input's own voxel order (exact: the canonical step only flips/permutes axes)
        canon = nib.Nifti1Image(state.mask, state.affine)
        brain_mask_img = canon.as_reoriented(
            nib.orientations.ornt_transform(
                nib.orientations.io_orientation(state.affine), nib.orientations.io_orientation(state.native_affine)
            )
        )
        brain_mask_img = nib.Nifti1Image(np.asarray(brain_mask_img.dataobj, dtype=np.uint8), state.native_affine)

    timings["total"] = time.perf_counter() - t_start
    if cancel is not None and cancel.is_set():
        raise Cancelled("Preprocessing cancelled.")
    if progress is not None:
        progress("done", len(done), len(done))
    record = state.record
    record["qc"] = state.qc
    record["timings_s"] = dict(timings)
    record["cpu_seconds"] = dict(cpu_seconds)
    return Preprocessed(
        model_input=np.ascontiguousarray(state.model_input, dtype=np.float32),
        gm_model=None if state.gm_model is None else state.gm_model.astype(np.float32),
        brain_mask=brain_mask_img,
        registered_t1=state.registered_t1,
        template_t1=state.template_t1,
        qc=state.qc,
        timings=timings,
        record=record,
        grid=spec.grid,
        template_to_scan=state.template_to_scan,
        native_shape=tuple(state.native_shape),
        native_affine=state.native_affine,
        tissues=state.tissues,
    )
