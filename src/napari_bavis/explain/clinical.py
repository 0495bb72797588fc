"""What ``pipeline.analyze`` adds for a reader: maps by atlas region, region importance in years and
faithfulness scores, all on the model grid in MNI space (where the atlas lies as it is).

Kept out of pipeline.py so that the pipeline only calls :func:`readout` and :func:`name_regions`.
Region importance and faithfulness cost forward passes; with ``None`` ("auto") each runs only when
one timed forward pass says it takes at most ``AUTO_BUDGET_S``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .atlas_summary import atlas_summary, name_components
from .faithfulness import FRACTIONS, faithfulness as faithfulness_of
from .occlusion import baseline_input, forward_ages, region_importance as occlude

#: "auto" runs region importance / faithfulness when each is estimated to take at most this long.
AUTO_BUDGET_S = 10.0


@dataclass
class Readout:
    atlas_regions: dict = field(default_factory=dict)  # method -> rows (atlas_summary)
    region_importance: list | None = None  # rows (occlusion), None when not run
    faithfulness: dict = field(default_factory=dict)  # method -> scores and curves
    record: dict = field(default_factory=dict)


def grid_brain(pre) -> np.ndarray:
    """The brain on the model grid: the template's brain mask, inside the scan's brain mask when the
    scan had brain extraction (the model input is zero outside it)."""
    from ..preprocess.templates import template_on_grid

    brain = np.asarray(template_on_grid("mask", pre.grid)) >= 0.5
    if getattr(pre, "brain_mask", None) is not None and getattr(pre, "registered_t1", None) is not None:
        scan_brain = np.asarray(pre.registered_t1.dataobj) != 0
        if scan_brain[brain].mean() > 0.5:  # a sane mask; a broken one would leave nothing to rank
            brain &= scan_brain
    return brain


def scan_voxel_mm3(pre) -> float:
    """One model-grid voxel's volume in the scan's own millimetres (MNI mm3 x the registration's scale)."""
    grid_mm3 = abs(np.linalg.det(np.asarray(pre.grid.affine)[:3, :3]))
    return float(grid_mm3 * abs(np.linalg.det(np.asarray(pre.template_to_scan)[:3, :3])))


def _seconds_per_volume(module, pair, sex) -> float:
    """One warm forward pass per volume, in seconds; on a CPU shared with other work, the process's
    own CPU time over torch's threads (what it would take unloaded), so "auto" does not depend on
    what else the machine is doing."""
    import torch

    wall, cpu = time.perf_counter(), time.process_time()
    forward_ages(module, pair, sex)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return min(wall, cpu / max(1, torch.get_num_threads())) / len(pair)


def _wanted(flag, estimate: float) -> bool:
    return estimate <= AUTO_BUDGET_S if flag is None else bool(flag)


def readout(module, card, pre, maps_model: dict, sex=None, atlas: str | None = "harvard_oxford",
            region_importance: bool | None = None, faithfulness: bool | None = None, start=None,
            check=None) -> Readout:
    """Atlas regions of every map, and (see module docstring) region importance and faithfulness.

    ``sex``: the model's sex tensor (1, 1) or None. ``start(step)``: called as each step begins
    (the pipeline's progress and timing); ``check()`` between batches (cancellation). ``atlas=None``
    skips everything atlas-based.
    """
    from ..atlases import atlas_on_grid, load_atlas
    from ..preprocess import PreprocessSpec

    start = start or (lambda step: None)
    out = Readout()
    brain = grid_brain(pre)
    voxel_mm3 = scan_voxel_mm3(pre)
    labels = names = None
    if atlas:
        start("atlas regions")
        names = load_atlas(atlas).names
        labels = np.where(brain, atlas_on_grid(atlas, pre.grid), 0)
        out.atlas_regions = {m: atlas_summary(v, labels, names, atlas, voxel_mm3, brain) for m, v in maps_model.items()}
        out.record["atlas"] = atlas
    if module is None or (region_importance is False and faithfulness is False):
        why = "switched off" if module is not None else "needs a hookable PyTorch module"
        if labels is not None:
            out.record["region_importance"] = {"skipped": f"region importance {why}"}
        if maps_model:
            out.record["faithfulness"] = {"skipped": f"faithfulness {why}"}
        return out

    spec = PreprocessSpec.from_card(card.to_dict() if hasattr(card, "to_dict") else dict(card))
    volume = np.asarray(pre.model_input, np.float32)
    baseline = np.where(brain, baseline_input(spec), volume).astype(np.float32)
    pair = np.stack([volume, baseline])
    age_scan, age_baseline = forward_ages(module, pair, sex)  # also the warm-up for the timing below
    per_volume = _seconds_per_volume(module, pair, sex)
    out.record.update(baseline="MNI152 2009 template brain through the model's smoothing and normalisation",
                      age_of_scan=float(age_scan), age_of_baseline=float(age_baseline),
                      seconds_per_forward_volume=round(per_volume, 4))

    n_regions = len(names) if names else 0
    ri_estimate = per_volume * (n_regions + 1)
    if labels is not None and _wanted(region_importance, ri_estimate):
        start("region importance")
        rows, rec = occlude(module, volume, labels, names, atlas, baseline, voxel_mm3, sex, check=check)
        out.region_importance = rows
        out.record["region_importance"] = rec
    elif labels is not None:
        out.record["region_importance"] = {"skipped": _skip_text("region importance", ri_estimate, region_importance)}

    inner = sum(1 for f in FRACTIONS if 0 < f < 1)
    ff_estimate = per_volume * 2 * inner * (len(maps_model) + 1)
    if maps_model and _wanted(faithfulness, ff_estimate):
        start("faithfulness")
        t1 = time.perf_counter()
        out.faithfulness = faithfulness_of(module, volume, maps_model, baseline, brain, sex, check=check)
        out.record["faithfulness"] = {"seconds": round(time.perf_counter() - t1, 3), "brain_voxels": int(brain.sum())}
    elif maps_model:
        out.record["faithfulness"] = {"skipped": _skip_text("faithfulness", ff_estimate, faithfulness)}
    return out


def _skip_text(what: str, estimate: float, flag) -> str:
    if flag is False:
        return f"{what} switched off"
    return (f"{what} skipped: about {estimate:.0f} s with this model (over {AUTO_BUDGET_S:g} s); "
            "switch it on explicitly to run it")


def name_regions(components: np.ndarray, table: list, affine, template_to_scan, atlas: str | None) -> list:
    """Connected regions on a scan grid named after the atlas region they overlap most (in place)."""
    if not atlas or template_to_scan is None or not table:
        return table
    from ..atlases import load_atlas

    return name_components(components, table, affine, template_to_scan, load_atlas(atlas))
