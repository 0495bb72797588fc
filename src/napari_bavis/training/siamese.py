"""Train a Siamese encoder that separates healthy from AD-like (CDR >= 1) phantoms with a
contrastive loss on all pairs of a batch; the card carries the two classes' reference embeddings."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ._common import (
    as_grid,
    check_positive,
    provenance,
    resume_path,
    seed_everything,
)
from .brain_age import DEMO_BA_CHANNELS
from .data import DEMO_INPUT, INPUTS_NOTE, load_splits, pipeline_card, split_by_subject
from .fit_loop import fit

#: The BA demo's trunk (``init_trunk_from`` the bundled demo needs the same channels).
DEMO_SIAMESE_CHANNELS = DEMO_BA_CHANNELS
#: Cohort of the Siamese demo: healthy and AD-like (CDR 1 or 2) only, in a 20-year band of old age
#: (over 55-90 y, age differences swamp the disease: a healthy 88-year-old looks like an AD-like 62-year-old).
SIAMESE_AGES = (65.0, 85.0)
SIAMESE_CDR_WEIGHTS = {0.0: 0.5, 1.0: 0.25, 2.0: 0.25}
CLASSES = ("healthy", "AD-like")


def embed_batch(model, xs: np.ndarray, device, batch_size: int = 16) -> np.ndarray:
    """Unit embeddings (N, D) of model inputs (N, X, Y, Z) in eval mode."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(xs), batch_size):
            out.append(model(torch.as_tensor(xs[i:i + batch_size], device=device)[:, None]).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out)


def contrastive_loss(emb, labels, margin: float = 1.0):
    """Mean over all pairs of the batch: d^2 for same-class pairs, max(0, margin - d)^2 otherwise
    (d = Euclidean distance of unit embeddings, in [0, 2])."""
    import torch

    d = torch.cdist(emb, emb).clamp_min(1e-9)
    same = labels[:, None] == labels[None, :]
    off_diag = ~torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    pos = (d**2)[same & off_diag]
    neg = (torch.clamp(margin - d, min=0.0) ** 2)[~same]
    parts = [p.mean() for p in (pos, neg) if p.numel()]
    return sum(parts) / max(1, len(parts))


def pair_auc(emb: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of cosine similarity: healthy-healthy pairs (positives) vs healthy-AD pairs."""
    from scipy.stats import mannwhitneyu

    cos = emb @ emb.T
    healthy = np.flatnonzero(labels == 0)
    ad = np.flatnonzero(labels == 1)
    iu = np.triu_indices(len(healthy), 1)
    hh = cos[np.ix_(healthy, healthy)][iu]
    hd = cos[np.ix_(healthy, ad)].ravel()
    if not len(hh) or not len(hd):
        return float("nan")
    return float(mannwhitneyu(hh, hd).statistic / (len(hh) * len(hd)))


def _finite(value: float) -> float | None:
    """JSON-safe metric: None where it is undefined (e.g. no pairs of a kind in a tiny split)."""
    return round(float(value), 4) if np.isfinite(value) and value >= 0 else None


def _init_trunk(model, path) -> str:
    """Copy a brain-age checkpoint's trunk into the encoder; returns a note for the card."""
    from .. import models
    from .data import TrainingError

    source, card = models.load_checkpoint(path, device="cpu")
    try:
        model.trunk.load_state_dict(source.trunk.state_dict())
    except (AttributeError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise TrainingError(f"cannot start the encoder from {Path(path).name}: its trunk does not match ({first})") from None
    return f"; encoder trunk initialised from the brain-age model {card.name} {card.version} (checksum {card.checksum[:12]})"


def class_labels(plan) -> np.ndarray:
    return np.array([0 if lab["cdr"] == 0 else 1 for lab in plan])


def train_siamese(
    out_path,
    n_subjects: int = 120,
    epochs: int = 10,
    grid=3.0,
    seed: int = 2027,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
    *,
    batch_size: int = 8,
    lr: float = 2e-3,
    margin: float = 1.0,
    channels=DEMO_SIAMESE_CHANNELS,
    embedding_dim: int = 32,
    input_kind: str = DEMO_INPUT["input_kind"],
    smoothing_fwhm_mm: float = DEMO_INPUT["smoothing_fwhm_mm"],
    intensity_normalisation: str = DEMO_INPUT["intensity_normalisation"],
    name: str = "demo-siamese",
    version: str = "0.1.0",
    init_trunk_from=None,
    ages=SIAMESE_AGES,
    cache_dir=None,
    workers: int = 1,
    command: str | None = None,
    through_pipeline: bool = False,
):
    """Train ``siamese3d`` on healthy vs AD-like phantoms (``ages``, default 65-85) and save it to ``out_path``.

    Split 70/15/15 by subject; the epoch with the best validation pair ROC AUC is kept; the card's
    reference embeddings are the normalised class centroids of the training split. Resumable like
    ``train_brain_age``. ``init_trunk_from``: a ``ba3d`` checkpoint with the same trunk whose
    convolutional weights start the encoder (features that already track atrophy; trained from
    scratch on so few phantoms, the contrastive loss did not move). Returns the saved ModelCard.
    """
    import torch

    from .. import models
    from ..phantoms import plan_cohort

    out_path = Path(out_path)
    n_subjects = check_positive("n_subjects", n_subjects, 6)
    epochs = check_positive("epochs", epochs)
    batch_size = check_positive("batch_size", batch_size, 2)
    grid = as_grid(grid)
    spec = {"input_kind": input_kind, "smoothing_fwhm_mm": float(smoothing_fwhm_mm),
            "intensity_normalisation": intensity_normalisation}
    config = {"task": "siamese", "n_subjects": n_subjects, "epochs": epochs, "grid": grid.to_dict(), "seed": seed,
              "batch_size": batch_size, "lr": lr, "margin": margin, "channels": list(channels),
              "embedding_dim": embedding_dim, "ages": [float(a) for a in ages],
              "init_trunk_from": str(init_trunk_from) if init_trunk_from else None, **spec, "through_pipeline": bool(through_pipeline)}
    dev = models.pick_device(device)
    t_start = time.perf_counter()

    plan = plan_cohort(n_subjects, seed, ages=tuple(ages), cdr_weights=SIAMESE_CDR_WEIGHTS,
                       disease_min_age=min(55.0, float(ages[0])))
    train_plan, val_plan, test_plan = split_by_subject(plan, seed=seed)
    x_train, x_val, x_test = load_splits((train_plan, val_plan, test_plan), grid, spec, cache_dir, workers, progress,
                                         through_pipeline)
    c_train, c_val, c_test = class_labels(train_plan), class_labels(val_plan), class_labels(test_plan)
    y_train = torch.as_tensor(c_train)

    seed_everything(seed)
    arch_kwargs = {"channels": list(channels), "final_channels": int(channels[-1]),
                   "head": [64, embedding_dim], "dropout": 0.1, "volume_shape": list(grid.shape)}
    model = models.build("siamese3d", **arch_kwargs).to(dev)
    trunk_note = ""
    if init_trunk_from:
        trunk_note = _init_trunk(model, init_trunk_from)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)

    def batch_loss(net, x, idx):
        return contrastive_loss(net(x), y_train[idx].to(dev), margin)

    def validate() -> float:
        return pair_auc(embed_batch(model, x_val, dev), c_val)

    fitted = fit(model, optimiser, x_train, batch_loss, validate, metric="val_auc", higher_is_better=True,
                 epochs=epochs, lr=lr, seed=seed, batch_size=batch_size, device=dev,
                 state_file=resume_path(out_path), config=config, resume=resume, desc=f"train {name}",
                 progress=progress, min_batch=2)
    model.eval()
    emb_train = embed_batch(model, x_train, dev)
    refs = {}
    for k, label in enumerate(CLASSES):
        centroid = emb_train[c_train == k].mean(axis=0) if np.any(c_train == k) else np.zeros(emb_train.shape[1])
        refs[label] = [round(float(v), 6) for v in centroid / (np.linalg.norm(centroid) or 1.0)]
    emb_test = embed_batch(model, x_test, dev)
    ref_matrix = np.array([refs[c] for c in CLASSES])
    nearest = np.argmax(emb_test @ ref_matrix.T, axis=1)
    metrics = {
        "best_epoch": fitted.best_epoch, "epochs": epochs,
        "n_train": len(train_plan), "n_validation": len(val_plan), "n_test": len(test_plan),
        "validation_pair_auc": _finite(fitted.best_score),
        "test_pair_auc": _finite(pair_auc(emb_test, c_test)),
        "test_nearest_reference_accuracy": round(float(np.mean(nearest == c_test)), 4),
        "train_seconds": round(time.perf_counter() - t_start, 1),
    }
    n_ad = int(sum(c_train == 1) + sum(c_val == 1) + sum(c_test == 1))
    card = models.ModelCard(
        name=name,
        version=version,
        architecture="siamese3d",
        architecture_kwargs=arch_kwargs,
        task="siamese",
        input_kind=input_kind,
        grid=grid.to_dict(),
        preprocessing=pipeline_card(grid, spec)["preprocessing"],
        sex_encoding=None,
        output={"meaning": "unit embedding (cosine similarity of two scans)", "units": "cosine"},
        training_age_range=[float(a) for a in ages],
        bias_correction=None,
        reference_embeddings=refs,
        training_data=(f"synthetic phantoms from the MNI152 2009 template (napari_bavis.phantoms"
                       f"{INPUTS_NOTE[bool(through_pipeline)]}), "
                       f"{n_subjects} subjects aged {ages[0]:g}-{ages[1]:g} ({n_subjects - n_ad} healthy CDR 0, {n_ad} AD-like "
                       f"CDR 1-2), seed {seed}, split by subject {len(train_plan)}/{len(val_plan)}/{len(test_plan)}; "
                       f"contrastive loss (margin {margin:g}) on all pairs of each batch{trunk_note}"),
        provenance=provenance(command, f"device {dev}; best epoch {fitted.best_epoch} of {epochs}"),
        licence="BSD-3-Clause",
        intended_use="synthetic demo — not for clinical use; research use only",
        extra={"training_metrics": metrics},
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return models.save_checkpoint(out_path, model.cpu(), card)
