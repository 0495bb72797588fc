"""Is a map faithful to the model? Deletion and insertion curves (Petsiuk et al. 2018, RISE) on the
model grid, each compared with the same curve for a random ordering of the voxels.

Why: a map can look anatomical and still say nothing about the model (Adebayo et al. 2018). Here
the model itself is asked: hide the map's top-ranked brain voxels first (deletion: the scan's values
replaced by the occlusion baseline, ``occlusion.baseline_input``, in steps of 10 % of the brain) and
record the brain age; or start from the baseline brain and put the scan's voxels back, top-ranked
first (insertion). The maps show what makes the brain age *higher* (positive evidence), so a
faithful map makes the deletion curve fall faster than a random ordering does (smaller
``deletion_auc``) and the insertion curve rise faster (larger ``insertion_auc``).

AUCs are the area under predicted age (years) over the fraction of brain voxels changed (0..1),
i.e. the curve's mean brain age in years. Both curves share their end points (the scan, and the
scan with its whole brain replaced by the baseline), so only the order of the voxels differs.
"""

from __future__ import annotations

import numpy as np

from .occlusion import BATCH, forward_ages

#: Fractions of the brain's voxels deleted / inserted (11 points, 9 forward passes per curve).
FRACTIONS = tuple(np.round(np.linspace(0.0, 1.0, 11), 3))


def ranking(values: np.ndarray, brain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of the brain voxels, highest map value first; ties in random order."""
    idx = np.flatnonzero(brain)
    v = np.asarray(values, np.float32).ravel()[idx]
    return idx[np.lexsort((rng.random(idx.size), -v))]


def _auc(ages, fractions) -> float:
    a, f = np.asarray(ages, float), np.asarray(fractions, float)
    return float(np.sum((a[1:] + a[:-1]) * np.diff(f)) / 2.0)


def curves(module, volume, baseline, order, fractions=FRACTIONS, sex=None, ends=None, batch=BATCH):
    """(deletion ages, insertion ages) at ``fractions`` for one voxel ``order``; ``ends`` = (age of the
    scan, age of the scan with every ordered voxel replaced) when already known."""
    x, b = np.asarray(volume, np.float32).ravel(), np.asarray(baseline, np.float32).ravel()
    counts = [int(round(f * order.size)) for f in fractions]
    inner = [k for k in counts if 0 < k < order.size]
    stack = []
    for k in inner:
        dele = x.copy()
        dele[order[:k]] = b[order[:k]]
        ins = x.copy()
        ins[order] = b[order]
        ins[order[:k]] = x[order[:k]]
        stack += [dele, ins]
    if ends is None:
        gone = x.copy()
        gone[order] = b[order]
        stack += [x, gone]
    ages = forward_ages(module, np.asarray(stack).reshape(len(stack), *np.shape(volume)), sex, batch) if stack else []
    age_x, age_gone = ends if ends is not None else (ages[-2], ages[-1])
    deletion, insertion, j = [], [], 0
    for k in counts:
        if k == 0:
            deletion.append(age_x), insertion.append(age_gone)
        elif k >= order.size:
            deletion.append(age_gone), insertion.append(age_x)
        else:
            deletion.append(ages[2 * j]), insertion.append(ages[2 * j + 1])
            j += 1
    return np.asarray(deletion, float), np.asarray(insertion, float)


def faithfulness(module, volume, maps: dict, baseline, brain, sex=None, seed: int = 0,
                 fractions=FRACTIONS, batch=BATCH, check=None) -> dict:
    """Per map: ``deletion_auc``, ``insertion_auc``, ``random_deletion_auc``, ``random_insertion_auc``
    (years), and the curves themselves (``fractions``, ``deletion_curve``, ``insertion_curve``,
    ``random_deletion_curve``, ``random_insertion_curve``). The random ordering is one seeded
    permutation of the brain voxels, shared by every map of the scan."""
    rng = np.random.default_rng(seed)
    brain = np.asarray(brain, bool)
    random_order = rng.permutation(np.flatnonzero(brain))
    rand_del, rand_ins = curves(module, volume, baseline, random_order, fractions, sex, None, batch)
    ends = (rand_del[0], rand_del[-1])
    out = {}
    for method, values in maps.items():
        if check is not None:
            check()  # the pipeline's cancel check, between maps
        dele, ins = curves(module, volume, baseline, ranking(values, brain, rng), fractions, sex, ends, batch)
        out[method] = {
            "deletion_auc": round(_auc(dele, fractions), 4),
            "insertion_auc": round(_auc(ins, fractions), 4),
            "random_deletion_auc": round(_auc(rand_del, fractions), 4),
            "random_insertion_auc": round(_auc(rand_ins, fractions), 4),
            "fractions": [float(f) for f in fractions],
            "deletion_curve": [round(float(a), 4) for a in dele],
            "insertion_curve": [round(float(a), 4) for a in ins],
            "random_deletion_curve": [round(float(a), 4) for a in rand_del],
            "random_insertion_curve": [round(float(a), 4) for a in rand_ins],
        }
    return out
