"""Re-centre a Siamese demo's reference embeddings on the inputs a user's scan gives.

The bundled ``demo-siamese`` encoder was trained on model-grid phantoms; through the pipeline (N4,
registration, resampling) every embedding moves, and the grid-made class centroids put the demo's
own "old AD-like" sample nearest to *healthy*. Retraining it through the pipeline needs 160 phantoms
preprocessed (minutes each on a shared machine); this keeps the encoder and recomputes the centroids
from pipeline inputs of phantoms of its own training split (never held-out ones). The card says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import as_grid, provenance
from .data import TrainingError, input_spec_from_card, load_inputs, split_by_subject
from .siamese import CLASSES, SIAMESE_AGES, SIAMESE_CDR_WEIGHTS, class_labels, embed_batch


def pipeline_references(checkpoint, out_path, n_subjects: int = 160, seed: int = 2027, first: int = 48,
                        ages=SIAMESE_AGES, cache_dir=None, workers: int = 1, progress: bool = False,
                        command: str | None = None):
    """Load the Siamese ``checkpoint`` (trained by ``train_siamese`` with ``n_subjects`` and ``seed``),
    put the training-split phantoms among the cohort's first ``first`` through the pipeline, and save
    it to ``out_path`` with ``reference_embeddings`` = their normalised class centroids. Returns the card."""
    import torch

    from .. import models
    from ..phantoms import plan_cohort

    model, card = models.load_checkpoint(checkpoint, device="cpu")
    if card.task != "siamese":
        raise TrainingError(f"{card.name} is a {card.task} model, not a Siamese encoder")
    plan = plan_cohort(n_subjects, seed, ages=tuple(ages), cdr_weights=SIAMESE_CDR_WEIGHTS,
                       disease_min_age=min(55.0, float(ages[0])))
    train = {lab["seed"] for lab in split_by_subject(plan, seed=seed)[0]}
    chosen = [lab for lab in plan[:first] if lab["seed"] in train]
    labels = class_labels(chosen)
    if len(set(labels.tolist())) < len(CLASSES):
        raise TrainingError(f"the first {first} phantoms hold training subjects of only one class")
    grid = as_grid(card.grid)
    xs, _ = load_inputs(chosen, grid, input_spec_from_card(card), cache_dir, workers, progress, through_pipeline=True)
    model.eval()
    emb = embed_batch(model, xs, torch.device("cpu"))
    refs = {}
    for k, label in enumerate(CLASSES):
        centroid = emb[labels == k].mean(axis=0)
        refs[label] = [round(float(v), 6) for v in centroid / (np.linalg.norm(centroid) or 1.0)]
    counts = {label: int((labels == k).sum()) for k, label in enumerate(CLASSES)}
    card.reference_embeddings = refs
    card.training_data += (f"; reference embeddings recomputed on pipeline inputs (native phantoms through the "
                           f"pipeline's preprocessing) of {len(chosen)} training-split subjects "
                           f"({counts['healthy']} healthy, {counts['AD-like']} AD-like; the training subjects "
                           f"among the cohort's first {first}); the encoder's weights are unchanged")
    card.provenance += "; references: " + provenance(command)
    card.extra.setdefault("training_metrics", {})["reference_subjects"] = {"n": len(chosen), **counts, "first": first}
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    return models.save_checkpoint(out_path, model, card)
