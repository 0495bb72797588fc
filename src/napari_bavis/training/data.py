"""Phantom datasets for training: generated once into an on-disk cache, turned into model inputs
exactly as ``napari_bavis.preprocess`` ends (brain mask, smoothing, normalisation), split by subject.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BavisError
from ..grid import Grid

#: Coarse MNI grid (61x73x61 at 3 mm, box -90..90, -126..90, -72..108) used by the demo models.
COARSE_GRID = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 3.0)
#: What the demo models are fed: a T1 on the coarse grid (the GM map from preprocess's EM
#: segmentation is sharper than the phantom's template-probability GM map; the T1 is not).
DEMO_INPUT = {"input_kind": "t1", "smoothing_fwhm_mm": 4.0, "intensity_normalisation": "zscore"}
#: How the trainers' cards say where the inputs came from (``load_inputs``'s ``through_pipeline``).
INPUTS_NOTE = {True: "; native-space phantoms put through the pipeline's preprocessing",
               False: "; made on the model grid, finished as preprocessing finishes a scan"}
#: Masks kept in the cache (everything the fidelity benchmark scores against).
MASK_NAMES = ("brain", "ventricles", "hippocampus", "cortex", "white_matter", "age", "disease")


class TrainingError(BavisError, ValueError):
    """Bad training arguments or an unusable resume state."""


def default_cache_dir() -> Path:
    """``$NAPARI_BAVIS_CACHE`` or a folder in the system temp dir (never inside the package)."""
    env = os.environ.get("NAPARI_BAVIS_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "napari-bavis-phantoms"


def _key(labels: dict, grid: Grid) -> str:
    text = json.dumps({"labels": labels, "grid": grid.to_dict()}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def _make_one(args) -> str:
    labels, grid_dict, path = args
    from ..phantoms import make_subject

    grid = Grid.from_dict(grid_dict)
    s = make_subject(labels["seed"], labels["age"], labels["sex"], labels["cdr"], grid=grid)
    masks = np.stack([s.masks[name] for name in MASK_NAMES])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, t1=s.t1_model, gm=s.gm_model, masks=np.packbits(masks, axis=None),
             tissue_age=np.float32(s.effects["tissue_age"]))
    os.replace(tmp, path)
    return str(path)


@dataclass
class PhantomRecord:
    """One cached phantom: labels, model-grid T1 and GM, ground-truth masks."""

    labels: dict
    t1: np.ndarray
    gm: np.ndarray
    masks: dict
    tissue_age: float


def load_record(path: Path, labels: dict, grid: Grid) -> PhantomRecord:
    with np.load(path) as z:
        n = int(np.prod(grid.shape))
        bits = np.unpackbits(z["masks"], count=n * len(MASK_NAMES)).astype(bool)
        masks = {name: m.reshape(grid.shape) for name, m in zip(MASK_NAMES, bits.reshape(len(MASK_NAMES), n))}
        return PhantomRecord(dict(labels), z["t1"], z["gm"], masks, float(z["tissue_age"]))


def cached_phantoms(
    plan: Sequence[dict],
    grid: Grid = COARSE_GRID,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    progress: bool = False,
) -> list[Path]:
    """Make the plan's phantoms on ``grid`` unless already cached; return their cache files."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{_key(lab, grid)}.npz" for lab in plan]
    todo = [(lab, grid.to_dict(), p) for lab, p in zip(plan, paths) if not p.is_file()]
    map_with_bar(_make_one, todo, "phantoms", workers, progress, chunksize=4)
    return paths


def map_with_bar(function, items: list, desc: str, workers: int = 1, progress: bool = False, chunksize: int = 1) -> None:
    """``function`` over ``items`` (in ``workers`` processes when > 1) with a progress bar; for cache fillers."""
    if not items:
        return
    bar = _bar(len(items), desc, progress)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(function, items, chunksize=chunksize):
                bar.update(1)
    else:
        for item in items:
            function(item)
            bar.update(1)
    bar.close()


def _bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)


def model_input(
    volume: np.ndarray,
    grid: Grid,
    input_kind: str = "t1",
    smoothing_fwhm_mm: float = 4.0,
    intensity_normalisation: str = "zscore",
) -> np.ndarray:
    """A phantom's model-grid array made into a model input the way ``preprocess`` finishes one.

    Same calls in the same order as preprocess's last steps on a skull-stripped scan (phantoms have
    no skull): the scan's own foreground (the brain-extraction step's "stripped" path) inside the
    template's brain mask, T1 times that mask, smoothing (FWHM in mm), normalisation with statistics
    inside the mask, T1 masked again. Training on the template mask instead put rim voxels into the
    statistics that the pipeline leaves out, and moved the demo sample's age by 18 y.
    """
    from ..preprocess.brain_mask import foreground_mask
    from ..preprocess.resample import normalise, smooth
    from ..preprocess.templates import template_on_grid

    values = np.asarray(volume, np.float32)
    mask = np.asarray(template_on_grid("mask", grid)) >= 0.5
    if input_kind == "t1":
        own = foreground_mask(values)
        mask = mask & own.astype(bool)
        values = values * mask
    out, _ = normalise(smooth(values, grid, smoothing_fwhm_mm), intensity_normalisation, mask)
    if input_kind == "t1":
        out = out * mask
    return np.ascontiguousarray(out, dtype=np.float32)


def pipeline_card(grid: Grid, spec: dict) -> dict:
    """The card fields ``preprocess`` reads, for a model fed ``spec`` on ``grid`` (what the trainers save)."""
    return {"input_kind": spec["input_kind"], "grid": grid.to_dict(),
            "preprocessing": {"bias_correction": True, "brain_extraction": True, "registration": "affine",
                              "segmentation": spec["input_kind"] == "gm", "modulation": False,
                              "smoothing_fwhm_mm": float(spec["smoothing_fwhm_mm"]),
                              "intensity_normalisation": spec["intensity_normalisation"]}}


def _pipeline_key(labels: dict, grid: Grid, spec: dict) -> str:
    from .real_data import _preprocess_code_hash

    text = json.dumps({"labels": labels, "grid": grid.to_dict(), "spec": spec, "made": "native phantom through preprocess",
                       "code": _preprocess_code_hash()}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def _make_through_pipeline(args) -> str:
    """Worker: a native-space phantom (scanner pose, voxel size, deformation) through the pipeline's
    ``preprocess``; caches the model input it gives and the phantom's masks on the grid."""
    labels, grid_dict, spec, path = args
    import SimpleITK as sitk
    import torch

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    torch.set_num_threads(1)
    from ..phantoms import make_subject
    from ..pipeline import as_scan, preprocess_scan

    grid = Grid.from_dict(grid_dict)
    s = make_subject(labels["seed"], labels["age"], labels["sex"], labels["cdr"], grid=grid, native=True)
    pre = preprocess_scan(as_scan(s.t1_native), pipeline_card(grid, spec))
    masks = np.stack([s.masks[name] for name in MASK_NAMES])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, x=pre.model_input, t1=s.t1_model, gm=s.gm_model, masks=np.packbits(masks, axis=None),
             tissue_age=np.float32(s.effects["tissue_age"]))
    os.replace(tmp, path)
    return str(path)


def pipeline_inputs(plan: Sequence[dict], grid: Grid, spec: dict, cache_dir=None, workers: int = 1,
                    progress: bool = False) -> tuple[np.ndarray, list[Path]]:
    """(N, X, Y, Z) model inputs made the way a user's scan is made: each phantom generated in a
    scanner pose (native space) and put through ``preprocess`` (extraction, N4, affine registration,
    resampling, normalisation). Slower than ``model_input`` on the grid phantom (about 8 s of CPU
    per phantom) but without its shortcut: a demo trained on grid phantoms put a 25-year-old native
    phantom at 53 y, as registration and resampling leave the brain a little off the template."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"pipe-{_pipeline_key(lab, grid, spec)}.npz" for lab in plan]
    todo = [(lab, grid.to_dict(), spec, p) for lab, p in zip(plan, paths) if not p.is_file()]
    map_with_bar(_make_through_pipeline, todo, "phantoms through the pipeline", workers, progress)
    xs = np.empty((len(plan), *grid.shape), np.float32)
    for i, path in enumerate(paths):
        with np.load(path) as z:
            xs[i] = z["x"]
    return xs, paths


def input_spec_from_card(card) -> dict:
    d = card.to_dict() if hasattr(card, "to_dict") else dict(card)
    pre = d.get("preprocessing") or {}
    return {
        "input_kind": d.get("input_kind", "t1"),
        "smoothing_fwhm_mm": float(pre.get("smoothing_fwhm_mm", 4.0) or 0.0),
        "intensity_normalisation": pre.get("intensity_normalisation", "none"),
    }


def load_inputs(
    plan: Sequence[dict],
    grid: Grid,
    spec: dict,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    progress: bool = False,
    keep_masks: bool = False,
    through_pipeline: bool = False,
) -> tuple[np.ndarray, list[PhantomRecord] | None]:
    """(N, X, Y, Z) float32 model inputs for the plan (phantoms cached on the way) and, on request,
    the records with their masks. ``through_pipeline``: native phantoms put through ``preprocess``
    (``pipeline_inputs``; what the bundled demo models are trained on), else the grid phantoms
    finished by ``model_input`` (fast; for tests and quick experiments)."""
    if through_pipeline:
        xs, paths = pipeline_inputs(plan, grid, spec, cache_dir, workers, progress)
        return xs, [load_record(p, lab, grid) for p, lab in zip(paths, plan)] if keep_masks else None
    paths = cached_phantoms(plan, grid, cache_dir, workers, progress)
    xs = np.empty((len(plan), *grid.shape), np.float32)
    records = [] if keep_masks else None
    for i, (lab, path) in enumerate(zip(plan, paths)):
        rec = load_record(path, lab, grid)
        xs[i] = model_input(rec.t1 if spec["input_kind"] == "t1" else rec.gm, grid, **spec)
        if keep_masks:
            records.append(rec)
    return xs, records


def load_splits(plans: Sequence[Sequence[dict]], grid: Grid, spec: dict, cache_dir=None, workers: int = 1,
                progress: bool = False, through_pipeline: bool = False) -> list[np.ndarray]:
    """``load_inputs`` of each plan (train, validation, test), in order."""
    return [load_inputs(plan, grid, spec, cache_dir, workers, progress, through_pipeline=through_pipeline)[0]
            for plan in plans]


def split_by_subject(plan: Sequence[dict], fractions=(0.7, 0.15, 0.15), seed: int = 0) -> tuple[list, list, list]:
    """Train / validation / test lists of a plan, split by subject seed (one subject never on two sides)."""
    seeds = sorted({lab["seed"] for lab in plan})
    rng = np.random.default_rng(seed)
    order = [seeds[i] for i in rng.permutation(len(seeds))]
    # at least two validation subjects (a bias correction needs two ages) and one test subject
    n_val = max(2, int(round(fractions[1] * len(order))))
    n_test = max(1, int(round(fractions[2] * len(order))))
    n_train = len(order) - n_val - n_test
    if n_train < 1:
        raise TrainingError(f"{len(order)} subjects are too few to split into train, validation and test")
    groups = (set(order[:n_train]), set(order[n_train:n_train + n_val]), set(order[n_train + n_val:]))
    return tuple([lab for lab in plan if lab["seed"] in g] for g in groups)  # type: ignore[return-value]


def augment(x, generator, shift: int = 1, flip: bool = True, offset_sd: float = 0.05):
    """Random left-right flip, a shift of up to ``shift`` voxels per axis (a registration's slack) and
    a global offset of the brain's values (SD ``offset_sd`` in z units: two brain masks of one scan
    move the z-score statistics by about that much, and the model must not read age from it)."""
    import torch

    out = x
    if flip and torch.rand((), generator=generator) < 0.5:
        out = torch.flip(out, dims=(2,))
    if shift:
        d = [int(v) for v in torch.randint(-shift, shift + 1, (3,), generator=generator)]
        out = torch.roll(out, shifts=d, dims=(2, 3, 4))
    if offset_sd:
        offsets = offset_sd * torch.randn((out.shape[0],) + (1,) * (out.ndim - 1), generator=generator)
        out = torch.where(out != 0, out + offsets, out)
    return out
