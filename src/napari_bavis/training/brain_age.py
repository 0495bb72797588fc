"""Train a brain-age regressor on healthy phantoms (split by subject), fit its bias correction on
the healthy validation split, and write a checkpoint with a complete model card."""

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
from .data import DEMO_INPUT, INPUTS_NOTE, load_splits, pipeline_card, split_by_subject
from .fit_loop import fit

#: Small channels: the demo model must train on two shared CPU cores and ship in a few MB. Two
#: poolings, not three: the last stage is 15x18x15 (12 mm) instead of 7x9x7 (24 mm), fine enough
#: for the maps to find the ventricles (docs/training.md, "Validation and fidelity").
DEMO_BA_CHANNELS = (4, 16, 32)
#: Grad-CAM layer of the demo: the second block's ReLU (30x36x30, 6 mm cells). On held-out phantoms
#: through the pipeline its Grad-CAM points into the ventricles in 24 of 24 cases with 6.8x chance
#: energy; the last stage's (12 mm) in 20 of 24 with 2.0x (bench_fidelity's layer table).
DEMO_BA_CAM_LAYER = "trunk.block_1.relu"
AGE_RANGE = (20.0, 90.0)
#: The net is trained on standardised ages z = (age - centre) / scale (unit-sized targets train far
#: faster than years); the scale is folded into its last linear layer before saving, so the saved
#: model outputs years as the contract says.
AGE_CENTRE, AGE_SCALE = 55.0, 20.0


def fold_age_scale(model, centre: float = AGE_CENTRE, scale: float = AGE_SCALE) -> None:
    """Make a model trained on standardised ages output years: out = scale * z + centre (exact)."""
    import torch

    with torch.no_grad():
        model.head.out.weight.mul_(scale)
        model.head.out.bias.mul_(scale).add_(centre)


def predict_batch(model, xs: np.ndarray, device, batch_size: int = 16, centre: float = 0.0,
                  scale: float = 1.0) -> np.ndarray:
    """Brain ages of model inputs (N, X, Y, Z) in eval mode (``centre + scale * output``)."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(xs), batch_size):
            x = torch.as_tensor(xs[i:i + batch_size], device=device)[:, None]
            out.append(centre + scale * model(x).reshape(-1).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


#: Below this slope of prediction on age, regression-on-age would divide by ~0 (an undertrained
#: model): the offset method is fitted instead, and the card says so.
MIN_REGRESSION_SLOPE = 0.2


def fit_correction(predicted, age) -> dict:
    """Regression-on-age coefficients, or offset coefficients where the slope is too flat to invert."""
    from .. import models

    coefficients = models.fit_bias_correction(predicted, age, "offset")
    if coefficients["alpha"] + 1.0 >= MIN_REGRESSION_SLOPE:  # slope of prediction on age = alpha + 1
        coefficients = models.fit_bias_correction(predicted, age, "regression-on-age")
    return coefficients


def train_brain_age(
    out_path,
    n_subjects: int = 300,
    epochs: int = 30,
    grid=3.0,
    seed: int = 2026,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
    *,
    batch_size: int = 8,
    lr: float = 2e-3,
    channels=DEMO_BA_CHANNELS,
    input_kind: str = DEMO_INPUT["input_kind"],
    smoothing_fwhm_mm: float = DEMO_INPUT["smoothing_fwhm_mm"],
    intensity_normalisation: str = DEMO_INPUT["intensity_normalisation"],
    name: str = "demo",
    version: str = "0.1.0",
    cache_dir=None,
    workers: int = 1,
    command: str | None = None,
    through_pipeline: bool = False,
    gradcam_layer: str | None = DEMO_BA_CAM_LAYER,
):
    """Train ``ba3d`` on ``n_subjects`` healthy (CDR 0) phantoms aged 20-90 and save it to ``out_path``.

    Split 70/15/15 by subject; the best epoch on the validation MAE is kept; bias correction
    (regression on age) is fitted on the validation split. A resume state ``<out>.resume.pt`` is
    written after every epoch; with ``resume=True`` a run continues from it (and a run asked for
    more epochs than the state holds trains only the missing ones). ``gradcam_layer``: recorded in
    the card's ``architecture_kwargs`` (None: the last stage); it does not change training. Returns
    the saved ModelCard.
    """
    import torch
    import torch.nn.functional as F

    from .. import models
    from ..phantoms import plan_cohort

    out_path = Path(out_path)
    n_subjects = check_positive("n_subjects", n_subjects, 6)
    epochs = check_positive("epochs", epochs)
    batch_size = check_positive("batch_size", batch_size)
    grid = as_grid(grid)
    spec = {"input_kind": input_kind, "smoothing_fwhm_mm": float(smoothing_fwhm_mm),
            "intensity_normalisation": intensity_normalisation}
    config = {"task": "brain_age", "n_subjects": n_subjects, "epochs": epochs, "grid": grid.to_dict(), "seed": seed,
              "batch_size": batch_size, "lr": lr, "channels": list(channels), **spec, "through_pipeline": bool(through_pipeline)}
    dev = models.pick_device(device)
    t_start = time.perf_counter()

    plan = plan_cohort(n_subjects, seed, ages=AGE_RANGE, cdr_weights={0.0: 1.0})
    train_plan, val_plan, test_plan = split_by_subject(plan, seed=seed)
    x_train, x_val, x_test = load_splits((train_plan, val_plan, test_plan), grid, spec, cache_dir, workers, progress,
                                         through_pipeline)
    z_train = torch.tensor([(lab["age"] - AGE_CENTRE) / AGE_SCALE for lab in train_plan], dtype=torch.float32)
    age_val = np.array([lab["age"] for lab in val_plan])
    age_test = np.array([lab["age"] for lab in test_plan])

    seed_everything(seed)
    arch_kwargs = {"channels": list(channels), "final_channels": int(channels[-1]), "use_sex": False,
                   "head": [32], "volume_shape": list(grid.shape), "output_bias": AGE_CENTRE}
    if gradcam_layer:
        arch_kwargs["gradcam_layer"] = gradcam_layer
    model = models.build("ba3d", **arch_kwargs).to(dev)
    torch.nn.init.zeros_(model.head.out.bias)  # standardised target during training
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)

    def batch_loss(net, x, idx):
        return F.smooth_l1_loss(net(x).reshape(-1), z_train[idx].to(dev), beta=0.1)

    def validate() -> float:
        return float(np.mean(np.abs(predict_batch(model, x_val, dev, 16, AGE_CENTRE, AGE_SCALE) - age_val)))

    fitted = fit(model, optimiser, x_train, batch_loss, validate, metric="val_mae", higher_is_better=False,
                 epochs=epochs, lr=lr, seed=seed, batch_size=batch_size, device=dev,
                 state_file=resume_path(out_path), config=config, resume=resume, desc=f"train {name}",
                 progress=progress)
    fold_age_scale(model)
    model.eval()
    pred_val = predict_batch(model, x_val, dev)
    pred_test = predict_batch(model, x_test, dev)
    bias = fit_correction(pred_val, age_val)
    test_corrected = models.correct_brain_age(pred_test, age_test, bias)
    metrics = {
        "best_epoch": fitted.best_epoch, "epochs": epochs,
        "n_train": len(train_plan), "n_validation": len(val_plan), "n_test": len(test_plan),
        "validation_mae": round(float(np.mean(np.abs(pred_val - age_val))), 3),
        "test_mae": round(float(np.mean(np.abs(pred_test - age_test))), 3),
        "test_mae_corrected": round(float(np.mean(np.abs(test_corrected - age_test))), 3),
        "test_r": round(float(np.corrcoef(pred_test, age_test)[0, 1]), 4) if len(age_test) > 1 else None,
        "train_seconds": round(time.perf_counter() - t_start, 1),
    }
    card = models.ModelCard(
        name=name,
        version=version,
        architecture="ba3d",
        architecture_kwargs=arch_kwargs,
        task="brain_age",
        input_kind=input_kind,
        grid=grid.to_dict(),
        preprocessing=pipeline_card(grid, spec)["preprocessing"],
        sex_encoding=None,
        output={"meaning": "brain age", "units": "years"},
        training_age_range=list(AGE_RANGE),
        bias_correction=bias,
        reference_embeddings=None,
        training_data=(f"synthetic phantoms from the MNI152 2009 template (napari_bavis.phantoms"
                       f"{INPUTS_NOTE[bool(through_pipeline)]}), "
                       f"{n_subjects} healthy (CDR 0) subjects aged 20-90, seed {seed}, split by subject "
                       f"{len(train_plan)}/{len(val_plan)}/{len(test_plan)} (train/validation/test); "
                       f"bias correction fitted on the validation split"),
        provenance=provenance(command, f"device {dev}; best epoch {fitted.best_epoch} of {epochs}"),
        licence="BSD-3-Clause",
        intended_use="synthetic demo — not for clinical use; research use only",
        extra={"training_metrics": metrics},
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return models.save_checkpoint(out_path, model.cpu(), card)
