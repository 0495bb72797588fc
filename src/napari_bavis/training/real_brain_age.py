"""The bundled real-brain model: a ridge ensemble (``linear3d``) on real T1 scans of a BIDS dataset,
cross-validated by subject against the two baselines any brain-age model must beat.

Why ridge and not a CNN: with 60 adults aged 19-55 a small CNN trained from scratch took minutes
per fold on two CPU cores and did not beat predicting the mean (7.5 y and 26 y MAE on two folds,
docs/training.md); a regularised linear model over 12 mm blocks of the normalised T1 does, and
keeps Grad-CAM meaningful (the voxels that make this brain look older).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..grid import Grid
from .data import COARSE_GRID, TrainingError
from .real_data import preprocessed_participants, read_participants

#: What the model reads: the T1 on the 3 mm MNI grid, z-scored inside the brain, masked.
REAL_INPUT = {"input_kind": "t1", "smoothing_fwhm_mm": 0.0, "intensity_normalisation": "zscore"}
POOL = 4  # 12 mm blocks: affine registration aligns anatomy at this scale, not gyri
MEMBERS = 10
ALPHAS = np.logspace(-3, 6, 40)
BASELINE_ATLAS = "neuromorphometrics"


def input_card(grid: Grid = COARSE_GRID) -> dict:
    return {"input_kind": REAL_INPUT["input_kind"], "grid": grid.to_dict(),
            "preprocessing": {"bias_correction": True, "brain_extraction": True, "registration": "affine",
                              "segmentation": True, "modulation": False,
                              "smoothing_fwhm_mm": REAL_INPUT["smoothing_fwhm_mm"],
                              "intensity_normalisation": REAL_INPUT["intensity_normalisation"]}}


def pooled(inputs: np.ndarray, pool: int = POOL) -> np.ndarray:
    """(N, X, Y, Z) -> (N, V): block means exactly as ``Linear3D``'s pooling computes them."""
    import torch

    t = torch.as_tensor(np.ascontiguousarray(inputs, np.float32))[:, None]
    return torch.nn.functional.avg_pool3d(t, pool, ceil_mode=True).flatten(1).numpy().astype(np.float64)


def fit_ensemble(features: np.ndarray, ages: np.ndarray, members: int = MEMBERS, seed: int = 0) -> dict:
    """Ridge fits (alpha by leave-one-out within each) on ``members`` random 80 % subsets.

    Returns ``centre`` (the training mean), ``weights`` (members, V) and ``biases`` so that member
    k predicts ``biases[k] + (x - centre) @ weights[k]``.
    """
    from sklearn.linear_model import RidgeCV

    rng = np.random.default_rng(seed)
    n = len(ages)
    centre = features.mean(axis=0)
    weights, biases, alphas = [], [], []
    for _ in range(members):
        pick = rng.choice(n, size=max(3, int(round(0.8 * n))), replace=False) if members > 1 else np.arange(n)
        fit = RidgeCV(alphas=ALPHAS).fit(features[pick], ages[pick])
        weights.append(fit.coef_)
        biases.append(fit.intercept_ + float(centre @ fit.coef_))
        alphas.append(float(fit.alpha_))
    return {"centre": centre, "weights": np.array(weights), "biases": np.array(biases), "alphas": alphas}


def predict_ensemble(fit: dict, features: np.ndarray) -> np.ndarray:
    return ((features - fit["centre"]) @ fit["weights"].T + fit["biases"]).mean(axis=1)


def region_gm_features(records, grid: Grid, atlas: str = BASELINE_ATLAS) -> np.ndarray:
    """The GM-volume baseline's features: total GM (ml), GM / intracranial volume, GM per atlas region."""
    from ..atlases import atlas_on_grid

    labels = atlas_on_grid(atlas, grid)
    ids = [v for v in np.unique(labels) if v]
    voxel_ml = abs(np.linalg.det(grid.affine[:3, :3])) / 1000.0
    rows = []
    for r in records:
        scale = voxel_ml * float(r.qc["affine_scale_determinant"])  # back to native millilitres
        gm = r.tissues["gm"] * scale
        icv = sum(float(r.tissues[k].sum()) for k in ("gm", "wm", "csf")) * scale
        sums = np.bincount(labels.ravel(), weights=gm.ravel(), minlength=int(labels.max()) + 1)
        rows.append(np.r_[gm.sum(), gm.sum() / icv, sums[ids]])
    return np.array(rows)


def _ridge_standardised(train_x, train_y, test_x) -> np.ndarray:
    from sklearn.linear_model import RidgeCV

    mu, sd = train_x.mean(0), train_x.std(0) + 1e-9
    return RidgeCV(alphas=ALPHAS).fit((train_x - mu) / sd, train_y).predict((test_x - mu) / sd)


def cross_validate(records, grid: Grid = COARSE_GRID, folds: int = 5, seed: int = 0, members: int = MEMBERS) -> dict:
    """Out-of-fold predictions of the model and both baselines on the same subject folds."""
    from sklearn.model_selection import KFold

    ages = np.array([r.participant.age for r in records])
    x = pooled(np.stack([r.model_input for r in records]))
    regions = region_gm_features(records, grid)
    out = {name: np.zeros(len(ages)) for name in ("model", "mean", "ridge_gm_volumes")}
    spread = np.zeros(len(ages))
    for k, (train, test) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(x)):
        fit = fit_ensemble(x[train], ages[train], members, seed + k)
        member_ages = (x[test] - fit["centre"]) @ fit["weights"].T + fit["biases"]
        out["model"][test] = member_ages.mean(axis=1)
        spread[test] = member_ages.std(axis=1, ddof=1) if members > 1 else 0.0
        out["mean"][test] = ages[train].mean()
        out["ridge_gm_volumes"][test] = _ridge_standardised(regions[train], ages[train], regions[test])
    return {"ages": ages, "predictions": out, "uncertainty": spread, "folds": folds, "seed": seed}


def summarise(cv: dict, records) -> dict:
    """MAE, r and the mean gap by group for every predictor of ``cross_validate``."""
    ages = cv["ages"]
    groups = np.array([r.participant.group or "" for r in records])
    table = {}
    for name, pred in cv["predictions"].items():
        gap = pred - ages
        row = {"mae": float(np.abs(gap).mean()),
               "r": float(np.corrcoef(pred, ages)[0, 1]) if np.std(pred) > 0 else float("nan")}
        for g in sorted(set(groups)):
            row[f"mean_gap_{g or 'unknown'}"] = float(gap[groups == g].mean())
        table[name] = row
    return table


def format_table(table: dict) -> str:
    columns = list(next(iter(table.values())))
    lines = ["| predictor | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")
    return "\n".join(lines)


def train_real_brain_age(out_path, bids_dir, name: str = "ds002748", version: str = "1.0.0", *,
                         cache_dir=None, workers: int = 2, folds: int = 5, seed: int = 0,
                         members: int = MEMBERS, control_group: str = "control", dataset: dict | None = None,
                         progress: bool = True, command: str | None = None):
    """Preprocess every scan of ``bids_dir`` as the pipeline does, cross-validate by subject, fit the
    ensemble on all subjects and save a checkpoint whose card carries the figures.

    The bias correction is fitted on the out-of-fold predictions of ``control_group`` only (the
    model never saw those subjects when it predicted them). Returns ``(card, summary table)``.
    """
    from .. import models
    from ._common import provenance
    from .brain_age import fit_correction

    t0 = time.perf_counter()
    grid = COARSE_GRID
    participants = read_participants(bids_dir)
    records = preprocessed_participants(participants, input_card(grid), cache_dir, workers, progress)
    refused = [(r.participant.subject, r.error) for r in records if r.error]
    records = [r for r in records if r.error is None]
    if len(records) < max(10, folds * 2):
        raise TrainingError(f"only {len(records)} scans could be preprocessed; too few to train and cross-validate")
    cv = cross_validate(records, grid, folds, seed, members)
    table = summarise(cv, records)
    ages = cv["ages"]
    controls = np.array([(r.participant.group or "") == control_group for r in records])
    basis = controls if controls.sum() >= 5 else np.ones(len(records), bool)
    bias = fit_correction(cv["predictions"]["model"][basis], ages[basis])

    x = pooled(np.stack([r.model_input for r in records]))
    fit = fit_ensemble(x, ages, members, seed)
    pooled_shape = tuple(int(np.ceil(s / POOL)) for s in grid.shape)
    arch_kwargs = {"volume_shape": list(grid.shape), "pool": POOL, "members": members}
    model = models.build("linear3d", **arch_kwargs)
    model.set_fit(fit["centre"].reshape(pooled_shape), fit["weights"].reshape(members, *pooled_shape), fit["biases"])

    dataset = dataset or {}
    groups = sorted({r.participant.group or "unknown" for r in records})
    sexes = {s: sum(1 for r in records if r.participant.sex == s) for s in ("F", "M")}
    metrics = {"cross_validation": {"folds": folds, "split": "by subject (one scan per subject)", "seed": seed,
                                    "table": table, "mean_member_spread_y": float(np.mean(cv["uncertainty"]))},
               "n_subjects": len(records), "refused": refused, "subjects": [r.participant.subject for r in records],
               "age_range": [float(ages.min()), float(ages.max())], "groups": groups, "sex_counts": sexes,
               "bias_correction_fitted_on": (f"out-of-fold predictions of the {int(basis.sum())} "
                                             f"{control_group if basis is controls else 'all'} subjects"),
               "ridge_alphas": fit["alphas"], "train_seconds": round(time.perf_counter() - t0, 1)}
    card = models.ModelCard(
        name=name, version=version, architecture="linear3d", architecture_kwargs=arch_kwargs, task="brain_age",
        input_kind=REAL_INPUT["input_kind"], grid=grid.to_dict(), preprocessing=input_card(grid)["preprocessing"],
        sex_encoding=None, output={"meaning": "brain age", "units": "years"},
        training_age_range=[float(np.floor(ages.min())), float(np.ceil(ages.max()))],
        bias_correction=bias, reference_embeddings=None,
        training_data=(f"{len(records)} real T1 scans of {dataset.get('name', Path(bids_dir).name)} "
                       f"({dataset.get('citation', 'see the dataset description')}; licence "
                       f"{dataset.get('licence', 'see the dataset')}), adults aged {ages.min():.0f}-{ages.max():.0f}, "
                       f"groups {', '.join(groups)}, {sexes['F']} F / {sexes['M']} M; subjects: "
                       f"{', '.join(metrics['subjects'])}"),
        provenance=provenance(command, f"ridge ensemble of {members} members on {POOL * 3} mm blocks"),
        licence="BSD-3-Clause (weights); training data " + dataset.get("licence", "see the dataset"),
        intended_use=(f"research demo of brain-age estimation for adults aged {ages.min():.0f}-{ages.max():.0f} "
                      f"(T1-weighted MRI); cross-validated MAE {table['model']['mae']:.1f} y; not a medical device, "
                      f"not for clinical use"),
        extra={"training_metrics": metrics},
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return models.save_checkpoint(out_path, model, card), table
