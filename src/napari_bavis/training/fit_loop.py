"""The one epoch loop both demo trainers use: cosine learning rate, augmented batches, BatchNorm
re-estimated before each validation, the best epoch kept, and a resume state after every epoch.

Brain-age and Siamese training differ only in the batch loss and the validation score; they pass
those in. A resumed run continues from the state file and draws the same batches (the generator of
each epoch depends on the seed and the epoch only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ._common import batches, cosine_lr, epoch_generator, load_state, recalibrate_batchnorm, save_state
from .data import augment


@dataclass
class FitResult:
    best_epoch: int  # 1-based; -1 when no epoch ran
    best_score: float
    history: list = field(default_factory=list)


def fit(
    model,
    optimiser,
    x_train: np.ndarray,
    batch_loss: Callable,  # (model, x (B,1,...) on the device, indices) -> scalar loss
    validate: Callable[[], float],  # the validation score after an epoch (model in train mode is fine)
    *,
    metric: str,  # its name in the history and the resume state ("val_mae", "val_auc")
    higher_is_better: bool,
    epochs: int,
    lr: float,
    seed: int,
    batch_size: int,
    device,
    state_file: Path,
    config: dict,
    resume: bool,
    desc: str,
    progress: bool,
    min_batch: int = 1,
) -> FitResult:
    """Train ``model`` for ``epochs`` (continuing a saved state when ``resume``); leaves the best
    epoch's weights in ``model``."""
    import torch
    from tqdm.auto import tqdm

    worst = -float("inf") if higher_is_better else float("inf")
    start, history, best = 0, [], {"score": worst, "epoch": -1, "state_dict": None}
    state = load_state(state_file, config) if resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        start, history, best = int(state["epoch"]), list(state["history"]), dict(state["best"])
        # states written before this loop was shared named the score after the task
        best.setdefault("score", best.get("mae", best.get("auc", worst)))

    def improves(score: float) -> bool:
        if np.isnan(score):
            return False
        return score > best["score"] if higher_is_better else score < best["score"]

    bar = tqdm(range(start, epochs), desc=desc, disable=not progress, initial=start, total=epochs)
    for epoch in bar:
        gen = epoch_generator(seed, epoch)
        for group in optimiser.param_groups:
            group["lr"] = cosine_lr(lr, epoch, epochs)
        model.train()
        losses = []
        for idx in batches(len(x_train), batch_size, gen):
            if len(idx) < min_batch:
                continue
            x = augment(torch.as_tensor(x_train[idx.numpy()])[:, None], gen).to(device)
            loss = batch_loss(model, x, idx)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        recalibrate_batchnorm(model, x_train, device)
        score = float(validate())
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else float("nan"),
                        metric: score})
        if improves(score):
            best = {"score": score, "epoch": epoch + 1,
                    "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        save_state(state_file, {"config": config, "epoch": epoch + 1, "model": model.state_dict(),
                                "optimiser": optimiser.state_dict(), "history": history, "best": best})
        bar.set_postfix(loss=f"{history[-1]['train_loss']:.3f}", **{metric: f"{score:.3f}"})
    bar.close()
    if best["state_dict"] is not None:
        model.load_state_dict(best["state_dict"])
    return FitResult(best["epoch"], float(best["score"]), history)
