"""A published model's input space: template grid, storage order, crop and normalisation statistics.

Why a separate concept: a published network was trained on arrays made one exact way (SFCN: FSL's
MNI152 1 mm grid, 182x218x182, stored with x running right->left, divided by the mean of the whole
array, then centre-cropped to 160x192x160). Feeding it anything else gives a silently wrong age.
The card's ``input_space`` records every one of these choices; ``preprocess`` builds exactly that
array (:func:`build_model_input`) and ``Preprocessed.to_native`` undoes it for the maps, because
the model grid is the crop *with its true affine* (the flip lives in the affine, not in a
hand-made ``[::-1]``).

Templates: only nilearn's MNI152 2009c (ICBM, 197x233x189 at 1 mm) ships on this machine, not
FSL's MNI152_T1_1mm. FSL's 1 mm grid is therefore defined from its known affine (``grid.FSL_MNI152_1MM``) and the
registration target (nilearn's template) is resampled onto it; both are MNI152 space, the two
templates differ by a few millimetres at the cortex (different nonlinear averages).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CheckpointError
from ..grid import FSL_MNI152_1MM, Grid, crop

FSL_MNI152_1MM_NAME = ("FSL MNI152 1 mm (MNI152_T1_1mm grid, 182x218x182, LAS storage); registration target: "
                       "nilearn's MNI152 2009c template resampled onto that grid (FSL's file is not shipped)")
#: Where the statistics of the intensity normalisation are taken.
STATISTICS = ("template_grid", "brain")


def _bad(problem: str) -> CheckpointError:
    return CheckpointError(f"model card: input_space {problem}")


def axcodes(affine: np.ndarray) -> str:
    """Storage order of an array on ``affine``, e.g. "RAS" or FSL's "LAS"."""
    import nibabel as nib

    return "".join(nib.aff2axcodes(np.asarray(affine, float)))


def centre_crop_start(full_shape, crop_shape) -> tuple[int, int, int]:
    """First kept index per axis of a centre crop: (n - m) // 2 voxels dropped at the low end."""
    return tuple((int(n) - int(m)) // 2 for n, m in zip(full_shape, crop_shape))


@dataclass(frozen=True)
class InputSpace:
    """The geometry and statistics of a published model's input (see the module docstring)."""

    template: str
    template_grid: Grid
    crop_start: tuple[int, int, int]
    crop_shape: tuple[int, int, int]
    storage: str  # axis codes of the template grid's array, e.g. "LAS" (first axis runs right -> left)
    normalisation_statistics: str = "brain"

    @property
    def model_grid(self) -> Grid:
        """The crop of the template grid, with its own true affine (flips included)."""
        return crop(self.template_grid, self.crop_start, self.crop_shape)

    @property
    def axis_flips_vs_ras(self) -> list[bool]:
        return [code in "LPI" for code in self.storage]

    @property
    def crop_slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(s, s + n) for s, n in zip(self.crop_start, self.crop_shape))

    def to_dict(self) -> dict:
        return {
            "template": self.template,
            "template_grid": self.template_grid.to_dict(),
            "storage": self.storage,
            "axis_flips_vs_ras": self.axis_flips_vs_ras,
            "crop": {"start": list(self.crop_start), "shape": list(self.crop_shape)},
            "normalisation_statistics": self.normalisation_statistics,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpace":
        """Parse and check a card's ``input_space``; one-line CheckpointError naming what is wrong."""
        if not isinstance(d, dict):
            raise _bad("must be an object")
        try:
            grid = Grid.from_dict(d["template_grid"])
            start = tuple(int(v) for v in d["crop"]["start"])
            shape = tuple(int(v) for v in d["crop"]["shape"])
            space = cls(template=str(d["template"]), template_grid=grid, crop_start=start, crop_shape=shape,
                        storage=str(d["storage"]), normalisation_statistics=str(d.get("normalisation_statistics", "brain")))
        except (KeyError, TypeError, ValueError) as err:
            raise _bad(f"is malformed ({type(err).__name__}: {err})") from None
        if len(grid.shape) != 3 or np.asarray(grid.affine).shape != (4, 4) or len(start) != 3 or len(shape) != 3:
            raise _bad("needs a 3D template_grid and a 3D crop")
        if any(s < 0 or n <= 0 or s + n > g for s, n, g in zip(start, shape, grid.shape)):
            raise _bad(f"crop start {list(start)} shape {list(shape)} does not fit the template grid {list(grid.shape)}")
        if space.storage != axcodes(grid.affine):
            raise _bad(f"storage {space.storage!r} does not match the template grid's affine ({axcodes(grid.affine)})")
        if space.normalisation_statistics not in STATISTICS:
            raise _bad(f"normalisation_statistics must be one of {', '.join(STATISTICS)}")
        flips = d.get("axis_flips_vs_ras")
        if flips is not None and list(flips) != space.axis_flips_vs_ras:
            raise _bad(f"axis_flips_vs_ras {flips} contradicts storage {space.storage!r}")
        return space


def fsl_mni152_centre_crop(crop_shape=(160, 192, 160), statistics: str = "template_grid") -> InputSpace:
    """FSL's MNI152 1 mm grid centre-cropped to ``crop_shape`` (SFCN: 160x192x160, start 11, 13, 11)."""
    return InputSpace(template=FSL_MNI152_1MM_NAME, template_grid=FSL_MNI152_1MM,
                      crop_start=centre_crop_start(FSL_MNI152_1MM.shape, crop_shape),
                      crop_shape=tuple(crop_shape), storage=axcodes(FSL_MNI152_1MM.affine),
                      normalisation_statistics=statistics)


def check_card_grid(space: InputSpace, grid: Grid) -> None:
    """The card's model grid must be the crop of the input space's template grid."""
    if grid != space.model_grid:
        raise _bad("crop of the template grid is not the card's grid (shape and affine must agree)")


def build_model_input(space: InputSpace, data: np.ndarray, affine: np.ndarray, mask: np.ndarray | None,
                      template_to_scan: np.ndarray, method: str, fwhm_mm: float = 0.0):
    """The model's input array: (the brain-extracted scan) on the full template grid, smoothed,
    normalised with statistics over ``space.normalisation_statistics``, then cropped.

    The scan is masked before the resampling, as a brain-extracted image is registered (its rim is
    interpolated with zeros). Returns (float32 array on ``space.model_grid``, record)."""
    from .resample import normalise, scan_to_grid, smooth

    full = space.template_grid
    source = data * mask if mask is not None else data
    values = scan_to_grid(np.asarray(source, np.float32), affine, full, template_to_scan)
    values = smooth(values, full, fwhm_mm)
    if space.normalisation_statistics == "template_grid":
        stats = np.ones(full.shape, bool)
    elif mask is not None:
        stats = scan_to_grid(mask.astype(np.float32), affine, full, template_to_scan) >= 0.5
    else:
        stats = values > 0
    normalised, record = normalise(values, method, stats)
    out = np.ascontiguousarray(normalised[space.crop_slices], dtype=np.float32)
    record = {**record, "statistics": space.normalisation_statistics, "input_space": space.to_dict()}
    return out, record
