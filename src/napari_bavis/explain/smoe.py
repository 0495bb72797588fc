"""SMOE scale saliency (Mundhenk et al.) for activations with any number of spatial axes.

The per-layer map is reduced over channels as soon as a layer runs, so only ``(B, *spatial)``
is kept, never the activations themselves.
"""

from __future__ import annotations

import math

import torch

NORMALISATIONS = ("gaussian", "gamma")


def smoe_scale(a: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``m * (log m - mean(log x))`` over channels, x = ReLU(a) + eps, m = mean(x); float32 ``(B, *spatial)``.

    Non-negative by Jensen's inequality; rounding can make it a hair below zero, so it is clamped.
    """
    # one full-size buffer, reused in place (this runs on every SMOE layer, the first is large)
    x = a.float().clamp_min(0).add_(eps)
    m = x.mean(dim=1)
    mean_log = x.log_().mean(dim=1)
    return (m * (m.log() - mean_log)).clamp_min(0)


def normalise_layer(maps: torch.Tensor, how: str = "gaussian", eps: float = 1e-7) -> torch.Tensor:
    """Map each row of ``maps`` (B, L) to [0, 1] by a CDF fitted to that row's own values.

    ``gaussian`` (the thesis default): Phi of the z-score. ``gamma``: the exact regularised lower
    incomplete gamma function at a Gamma fitted by the closed-form maximum-likelihood shape
    approximation (Minka), as SMOE's authors intended but without fastcam's truncated series.
    A constant row carries no information and becomes 0.5 everywhere (never NaN).
    """
    if how == "gaussian":
        mu = maps.mean(dim=1, keepdim=True)
        sd = maps.std(dim=1, unbiased=False, keepdim=True)
        z = (maps - mu) / torch.where(sd > 0, sd, torch.ones_like(sd))
        return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))
    if how == "gamma":
        x = maps.clamp_min(eps)
        mean = x.mean(dim=1, keepdim=True)
        s = (mean.log() - x.log().mean(dim=1, keepdim=True)).clamp_min(0)
        degenerate = s <= 1e-9
        s_safe = torch.where(degenerate, torch.ones_like(s), s)
        shape = (3.0 - s_safe + torch.sqrt((s_safe - 3.0) ** 2 + 24.0 * s_safe)) / (12.0 * s_safe)
        scale = mean / shape
        cdf = torch.special.gammainc(shape, x / scale)
        return torch.where(degenerate, torch.full_like(cdf, 0.5), cdf)
    raise ValueError(f"unknown SMOE normalisation {how!r}")
