"""Grad-CAM and Grad-CAM++ at layer resolution, for activations of any number of spatial axes.

All functions take float32 activations ``a`` and gradients ``g`` of shape ``(B, C, *spatial)`` and
return maps of shape ``(B, *spatial)``.
"""

from __future__ import annotations

import torch


def _spatial_dims(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, t.ndim))


def gradcam_weights(g: torch.Tensor) -> torch.Tensor:
    """Selvaraju et al.: the spatial mean of the gradient, one weight per channel ``(B, C)``."""
    return g.mean(dim=_spatial_dims(g))


def gradcampp_weights(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Chattopadhyay et al. eq. 19 with S = exp(Y), divided by exp(Y).

    The exp factors cancel inside alpha, and the remaining exp(Y) only rescales every weight of
    one input by the same factor, so leaving it out keeps the map's shape and makes it finite for
    any score (exp(Y) overflows float32 above Y = 88.7, i.e. for many brain ages). alpha is 0
    where its denominator is 0 (the paper's convention for zero gradients).
    """
    g2 = g * g
    g3 = g2 * g
    sum_a = a.sum(dim=_spatial_dims(a), keepdim=True)
    denom = 2.0 * g2 + sum_a * g3
    nonzero = denom != 0
    alpha = torch.where(nonzero, g2 / torch.where(nonzero, denom, torch.ones_like(denom)), torch.zeros_like(denom))
    return (alpha * g.clamp_min(0)).sum(dim=_spatial_dims(g))


def weighted_map(w: torch.Tensor, a: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """sum_k w_k A_k, ReLU'd unless ``signed`` (then negative values mark regions pushing the target down)."""
    m = (w.reshape(*w.shape, *([1] * (a.ndim - 2))) * a).sum(dim=1)
    return m if signed else m.clamp_min(0)


def gradcam(a: torch.Tensor, g: torch.Tensor, signed: bool = False) -> torch.Tensor:
    return weighted_map(gradcam_weights(g), a, signed)


def gradcampp(a: torch.Tensor, g: torch.Tensor, signed: bool = False) -> torch.Tensor:
    return weighted_map(gradcampp_weights(a, g), a, signed)
