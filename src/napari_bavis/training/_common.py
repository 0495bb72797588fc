"""What both trainers share: grids from CLI-friendly values, seeds, resume state files, provenance."""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..grid import Grid
from .data import COARSE_GRID, TrainingError

MNI_BOX = ((-90, 90), (-126, 90), (-72, 108))


def as_grid(grid) -> Grid:
    """A Grid from a Grid, a voxel size in mm (the MNI box at that size) or a ``Grid.to_dict()``."""
    if grid is None:
        return COARSE_GRID
    if isinstance(grid, Grid):
        return grid
    if isinstance(grid, dict):
        return Grid.from_dict(grid)
    try:
        size = float(grid)
    except (TypeError, ValueError):
        raise TrainingError(f"grid must be a Grid, a voxel size in mm or a grid dict, got {grid!r}") from None
    if not 1.0 <= size <= 12.0:
        raise TrainingError(f"grid voxel size must be between 1 and 12 mm, got {size:g}")
    return Grid.from_bbox(MNI_BOX, size)


def check_positive(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise TrainingError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def seed_everything(seed: int):
    """Seed torch and return a CPU generator for shuffling and augmentation."""
    import torch

    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def epoch_generator(seed: int, epoch: int):
    """A generator that depends on (seed, epoch) only: a resumed run draws the same batches."""
    import torch

    return torch.Generator().manual_seed(int(np.random.SeedSequence((seed, epoch)).generate_state(1)[0]))


def cosine_lr(base: float, epoch: int, epochs: int, warmup: int = 1) -> float:
    if epoch < warmup:
        return float(base * (epoch + 1) / (warmup + 1))
    progress = (epoch - warmup) / max(1, epochs - warmup)
    return float(base * (0.02 + 0.98 * 0.5 * (1.0 + np.cos(np.pi * min(1.0, progress)))))


def resume_path(out_path: Path) -> Path:
    """The resume state lives beside the output: ``<out>.resume.pt``."""
    return out_path.with_name(out_path.name + ".resume.pt")


def save_state(path: Path, state: dict) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path, config: dict) -> dict | None:
    """The saved state if it was made with the same configuration (epochs may differ)."""
    import torch

    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise TrainingError(f"cannot read the resume state {path} ({type(err).__name__}); delete it or pass resume=False") from None
    saved = {k: v for k, v in state.get("config", {}).items() if k != "epochs"}
    wanted = {k: v for k, v in config.items() if k != "epochs"}
    if saved != wanted:
        diff = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        raise TrainingError(
            f"the resume state {path.name} was made with other settings ({', '.join(diff)}); delete it or pass resume=False"
        )
    return state


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(command: str | None, extra: str = "") -> str:
    import torch

    from .. import __version__

    cmd = command or " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = git_commit()
    parts = [f"trained with napari-bavis {__version__}", f"command: {cmd}", f"date: {date}",
             f"git commit: {commit or 'unknown'}", f"torch {torch.__version__}"]
    if extra:
        parts.append(extra)
    return "; ".join(parts)


def batches(n: int, batch_size: int, generator):
    import torch

    order = torch.randperm(n, generator=generator)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def recalibrate_batchnorm(model, xs: np.ndarray, device, n: int = 48, batch_size: int = 8) -> None:
    """Re-estimate BatchNorm running statistics as exact averages over up to ``n`` training inputs
    (no augmentation, no gradients): with small batches and a high learning rate the running
    averages lag the weights, and eval-mode predictions swing wildly from epoch to epoch."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    with torch.no_grad():
        for i in range(0, min(n, len(xs)), batch_size):
            x = torch.as_tensor(xs[i:i + batch_size], device=device)[:, None]
            model(x)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.train(was_training)
