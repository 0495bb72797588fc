"""What is explained: turn a model output into the scalar that gradients start from.

A score function takes the model output and returns ``(score, values)``: ``score`` is the
0-d tensor differentiated once, ``values`` the detached per-input scores (or the similarity).
Inputs are independent in eval mode, so the gradient of the sum of per-input scores with
respect to input i's activations is the gradient of input i's own score.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..errors import ExplainError

ScoreFn = Callable[[object], tuple[torch.Tensor, torch.Tensor]]


def _shape(t: object) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def per_input_target(target: None | int | Callable, n: int) -> ScoreFn:
    """``None``: the model's single output per input; ``int``: that output column; callable: ``output -> (n,) tensor``."""
    if not (target is None or isinstance(target, int) or callable(target)):
        raise ExplainError(f"target must be None, an output index or a callable, not {type(target).__name__}")

    def score(output):
        if target is None or isinstance(target, int):
            if not isinstance(output, torch.Tensor):
                raise ExplainError(
                    f"the model returns {type(output).__name__}, not a tensor: pass target=callable that picks the score"
                )
            if output.ndim == 0 or output.shape[0] != n:
                raise ExplainError(f"the model output has shape {_shape(output)}, expected one row per input ({n})")
            flat = output.reshape(n, -1)
            if target is None:
                if flat.shape[1] != 1:
                    raise ExplainError(
                        f"the model gives {flat.shape[1]} outputs per input; pass target=index or a callable returning one scalar per input"
                    )
                t = flat[:, 0]
            else:
                if not -flat.shape[1] <= target < flat.shape[1]:
                    raise ExplainError(f"target={target} is out of range for {flat.shape[1]} outputs per input")
                t = flat[:, target]
        else:
            t = target(output)
            if not isinstance(t, torch.Tensor):
                raise ExplainError(f"the target callable returned {type(t).__name__}; it must return a tensor")
        if t.numel() != n:
            if n == 1:
                raise ExplainError(f"the target must be a scalar, got shape {tuple(t.shape)}")
            raise ExplainError(f"the target must give one scalar per input ({n}), got shape {tuple(t.shape)}")
        values = t.reshape(n).float()
        return values.sum(), values.detach()

    return score


def cosine_target(n_a: int, n_b: int) -> ScoreFn:
    """Cosine similarity of the two branches; a branch of several rows is the re-normalised mean of its embeddings."""

    def score(output):
        if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != n_a + n_b:
            raise ExplainError(
                f"the encoder must return one embedding per input, shape ({n_a + n_b}, D); got {_shape(output)}"
            )
        e = output.float()
        ea = F.normalize(e[:n_a].mean(dim=0), dim=0)
        eb = F.normalize(e[n_a:].mean(dim=0), dim=0)
        sim = (ea * eb).sum()
        return sim, sim.detach().reshape(1)

    return score
