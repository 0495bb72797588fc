"""Strict checks of a stored model card and of its weights before anything is built.

Why a module of its own: cards from elsewhere were taken too kindly. A card without a checksum
loaded altered weights silently; a missing ``preprocessing`` silently became "none" where the model
was trained on z-scored input; ages of 200–300 y, a 1e9 mm smoothing or a 100000³ grid were
accepted; negative channel counts crashed inside torch with a traceback and ``channels=[1024]*4``
allocated a huge model before any shape was compared. Here every field's type and range is
checked, required fields are named when missing, and the architecture is first built on torch's
``meta`` device (no memory) and compared with the state_dict's shapes.
"""

from __future__ import annotations

import math
import unicodedata

import numpy as np

from ..errors import CheckpointError

#: Fields a card stored in a napari-bavis checkpoint must have (save_checkpoint always writes them).
REQUIRED_FIELDS = ("name", "architecture", "version", "task", "architecture_kwargs", "input_kind", "grid",
                   "preprocessing", "output", "checksum")
REQUIRED_PREPROCESSING = ("bias_correction", "brain_extraction", "registration", "segmentation", "modulation",
                          "smoothing_fwhm_mm", "intensity_normalisation")
AGE_YEARS = (0.0, 120.0)
MAX_SMOOTHING_MM = 20.0
GRID_VOXEL_MM = (0.25, 20.0)
MAX_GRID_VOXELS = 256**3
#: Largest model built from a card (parameters): the bundled ones have < 3 M, SFCN ~3 M.
MAX_PARAMETERS = 200_000_000


def _bad(name: str, problem: str) -> CheckpointError:
    return CheckpointError(f"model card: {name} {problem}")


def printable(text, limit: int = 200) -> str:
    """``text`` safe for a terminal: control characters (newlines, ANSI escapes) shown as ``?``."""
    out = "".join("?" if unicodedata.category(ch).startswith("C") else ch for ch in str(text))
    return out if len(out) <= limit else out[: limit - 1] + "…"


def check_stored_card(card: dict) -> None:
    """A card read from a checkpoint: required fields present (named when missing), nothing defaulted."""
    if not isinstance(card, dict):
        raise CheckpointError(f"model card: expected a JSON object, got {type(card).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k != "checksum" and (k not in card or card[k] is None)]
    if missing:
        raise CheckpointError(f"model card: required field(s) missing: {', '.join(missing)}")
    if not card.get("checksum"):
        raise CheckpointError("model card: has no checksum, so its weights cannot be verified (napari-bavis "
                              "always writes one); refused")
    prep = card["preprocessing"]
    if isinstance(prep, dict):
        missing = [k for k in REQUIRED_PREPROCESSING if k not in prep]
        if missing:
            raise CheckpointError(f"model card: preprocessing field(s) missing: {', '.join(missing)}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_card_values(card) -> None:
    """Types and ranges of every field :meth:`ModelCard.validate` leaves open."""
    from ..preprocess.spec import REGISTRATIONS

    for name in ("name", "version", "training_data", "provenance", "licence", "intended_use"):
        value = getattr(card, name)
        if not isinstance(value, str):
            raise _bad(name, f"must be a string, not {type(value).__name__}")
    if len(card.name) > 200:
        raise _bad("name", "is longer than 200 characters")
    prep = card.preprocessing
    for key in ("bias_correction", "segmentation", "modulation"):
        if key in prep and not isinstance(prep[key], bool):
            raise _bad(f"preprocessing.{key}", "must be true or false")
    if "registration" in prep and prep["registration"] not in REGISTRATIONS:
        raise _bad("preprocessing.registration", f"must be one of {', '.join(REGISTRATIONS)}")
    fwhm = prep.get("smoothing_fwhm_mm", 0.0)
    if not _number(fwhm) or not 0 <= fwhm <= MAX_SMOOTHING_MM:
        raise _bad("preprocessing.smoothing_fwhm_mm", f"must be between 0 and {MAX_SMOOTHING_MM:g} mm, not {fwhm!r}")
    if not isinstance(card.output, dict) or not isinstance(card.output.get("meaning"), str):
        raise _bad("output", "must be an object with a 'meaning'")
    if card.training_age_range is not None:
        low, high = card.training_age_range
        if not (_number(low) and _number(high) and AGE_YEARS[0] <= low < high <= AGE_YEARS[1]):
            raise _bad("training_age_range", f"must lie within {AGE_YEARS[0]:g}–{AGE_YEARS[1]:g} years, not {[low, high]}")
    if card.sex_encoding is not None and not all(_number(v) for v in card.sex_encoding.values()):
        raise _bad("sex_encoding", "values must be finite numbers")
    bc = card.bias_correction
    if bc is not None and any(abs(bc[k]) > 1e3 for k in ("alpha", "beta")):
        raise _bad("bias_correction", "alpha and beta must be plausible (|value| <= 1000)")
    _check_grid(card.grid)


def _check_grid(grid: dict) -> None:
    try:
        shape = [int(s) for s in grid["shape"]]
        affine = np.asarray(grid["affine"], dtype=float)
    except (KeyError, TypeError, ValueError):
        raise _bad("grid", "must be {'shape': [3 ints], 'affine': 4x4 numbers}") from None
    if len(shape) != 3 or min(shape) < 2 or any(s != v for s, v in zip(shape, grid["shape"])):
        raise _bad("grid.shape", f"must be 3 integers >= 2, not {grid['shape']}")
    if math.prod(shape) > MAX_GRID_VOXELS:
        raise _bad("grid.shape", f"{'x'.join(map(str, shape))} is larger than {MAX_GRID_VOXELS} voxels")
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise _bad("grid.affine", "must be a finite 4x4 matrix")
    voxel = np.linalg.norm(affine[:3, :3], axis=0)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-6 or voxel.min() < GRID_VOXEL_MM[0] or voxel.max() > GRID_VOXEL_MM[1]:
        raise _bad("grid.affine", f"is singular or its voxels ({', '.join(f'{v:g}' for v in voxel)} mm) are outside "
                   f"{GRID_VOXEL_MM[0]:g}–{GRID_VOXEL_MM[1]:g} mm")


def build_checked(architecture: str, kwargs: dict, state: dict, what: str):
    """Build ``architecture`` only after a memory-free build on torch's meta device proves that
    ``kwargs`` make sense and give exactly the state_dict's tensor shapes."""
    import torch

    from .checkpoint import load_state_dict_into
    from .registry import build

    try:
        with torch.device("meta"):
            skeleton = build(architecture, **kwargs)
    except CheckpointError:
        raise
    except Exception as err:  # negative sizes and the like raise inside torch
        text = " ".join(str(err).split())[:160]
        raise CheckpointError(f"model card: architecture_kwargs cannot build {what}: {type(err).__name__}: {text}") from None
    parameters = sum(p.numel() for p in skeleton.parameters())
    if parameters > MAX_PARAMETERS:
        raise CheckpointError(f"model card: architecture_kwargs give {what} {parameters / 1e6:.0f} M parameters "
                              f"(at most {MAX_PARAMETERS / 1e6:.0f} M)")
    expected = skeleton.state_dict()
    shapes = [f"{k} file {tuple(state[k].shape)} vs card {tuple(v.shape)}" for k, v in expected.items()
              if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)]
    if shapes or set(expected) != set(state):
        try:  # the same report as a real load, without allocating the real model
            load_state_dict_into(skeleton, state, what)
        except CheckpointError as err:
            detail = str(err).split(": ", 1)[-1]
            detail = detail if len(detail) <= 200 else detail[:199] + "…"
            raise CheckpointError(f"model card: architecture_kwargs do not fit the stored weights of {what} "
                                  f"({detail})") from None
    model = build(architecture, **kwargs)
    load_state_dict_into(model, state, what)
    return model
