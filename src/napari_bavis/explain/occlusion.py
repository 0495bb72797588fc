"""Region importance in years: the brain age with one atlas region hidden, minus the scan's brain age.

Why: a map says *where* the model looks; occlusion says *how much* each region moves the number the
clinician reads ("hiding the lateral ventricles lowers the brain age by 4.1 y"). It needs only
forward passes (no gradients, any model, also a linear one), batched.

**Baseline.** A hidden region takes the values of the MNI152 2009 template brain (an average of
healthy young adults, shipped inside nilearn), put through the model's own preprocessing on the
model grid: the T1 (or, for gray-matter models, the template's gray-matter probability) inside the
template's brain mask, smoothed with the card's FWHM and normalised with the card's method inside
that mask. Hiding a region therefore asks "what if this region looked like the average template
brain's?", not "what if it were black" (a hole no training scan ever had).
"""

from __future__ import annotations

import time

import numpy as np

from .atlas_summary import split_side

#: Volumes per forward pass: bounds memory (16 x 61x73x61 float32 = 17 MB of input).
BATCH = 16


def baseline_input(spec) -> np.ndarray:
    """The template brain on the model grid as ``spec`` (``preprocess.PreprocessSpec``) preprocesses a scan."""
    from ..preprocess.resample import normalise, smooth
    from ..preprocess.templates import template_on_grid

    grid = spec.grid
    brain = np.asarray(template_on_grid("mask", grid)) >= 0.5
    source = np.asarray(template_on_grid("t1" if spec.input_kind == "t1" else "gm", grid), np.float32) * brain
    values, _ = normalise(smooth(source, grid, spec.smoothing_fwhm_mm), spec.intensity_normalisation, brain)
    if spec.input_kind == "t1":
        values = values * brain  # as the pipeline zeroes a brain-extracted scan outside the brain
    return np.ascontiguousarray(values, np.float32)


def forward_ages(module, volumes: np.ndarray, sex=None, batch: int = BATCH) -> np.ndarray:
    """Brain ages (the model's single output, eval mode, no gradients) of ``volumes`` (N, *grid)."""
    import torch

    device = next(module.parameters(), torch.empty(0)).device
    was_training = module.training
    module.eval()
    out = []
    try:
        with torch.inference_mode():
            for start in range(0, len(volumes), batch):
                x = torch.as_tensor(np.ascontiguousarray(volumes[start:start + batch]), dtype=torch.float32,
                                    device=device)[:, None]
                args = (x,) if sex is None else (x, sex.expand(x.shape[0], -1))
                out.append(module(*args).float().reshape(x.shape[0], -1)[:, 0].cpu().numpy())
    finally:
        module.train(was_training)
    return np.concatenate(out).astype(float) if out else np.zeros(0)


def region_importance(module, volume: np.ndarray, labels: np.ndarray, names: dict, atlas: str,
                      baseline: np.ndarray, voxel_mm3: float, sex=None, batch: int = BATCH,
                      check=None) -> tuple[list[dict], dict]:
    """Occlude each labelled region of ``labels`` (same grid as ``volume``) with ``baseline``.
    ``check()`` runs before each batch (the pipeline's cancel check: it raises to stop).

    Returns (rows sorted by |delta_years|, record). ``delta_years`` = age with the region occluded
    minus age of the scan, both from the same batched forward path.
    """
    t0 = time.perf_counter()
    volume = np.asarray(volume, np.float32)
    flat_labels = np.asarray(labels).ravel()
    index = {v: np.flatnonzero(flat_labels == v) for v in names}
    present = [v for v in names if index[v].size]
    flat_base = np.asarray(baseline, np.float32).ravel()

    def occluded(values):
        out = np.repeat(volume.reshape(1, -1), len(values), axis=0)
        for row, v in zip(out, values):
            row[index[v]] = flat_base[index[v]]
        return out.reshape(len(values), *volume.shape)

    ages = []
    for start in range(0, len(present) + 1, batch):
        if check is not None:
            check()
        chunk = present[max(start - 1, 0):start + batch - 1]
        stack = occluded(chunk) if start else np.concatenate([volume[None], occluded(chunk)])
        ages.extend(forward_ages(module, stack, sex, batch))
    age_scan = ages.pop(0)
    rows = []
    for v, age in zip(present, ages):
        region, side = split_side(names[v])
        rows.append({"region": region, "hemisphere": side, "atlas": atlas, "label": int(v),
                     "delta_years": float(age - age_scan),
                     "volume_mm3": round(float(index[v].size * voxel_mm3), 1)})
    rows.sort(key=lambda r: -abs(r["delta_years"]))
    record = {"age_of_scan": float(age_scan), "regions": len(present), "batch": batch,
              "seconds": round(time.perf_counter() - t0, 3)}
    return rows, record
