"""A linear brain-age model over a (pooled) model-grid volume, as a PyTorch module the explanation
engine can read.

Why a linear model: with tens of real training scans a voxel-wise ridge regression (the family of
brainageR's PCA + Gaussian-process model) is what holds up on held-out subjects; a CNN trained from
scratch on 50 brains does not (docs/training.md has the cross-validated figures). Why this shape:

- ``centre`` is the training mean input, so a voxel's *contribution* ``c = w * (x - centre)`` says
  how far this brain's value there moves the age away from the training mean age (``bias``).
- The ``contributions`` layer outputs ``ReLU([c, -c])`` (2 channels: "older", "younger");
  the age is ``bias + sum(older) - sum(younger)``. Grad-CAM at that layer is exactly ``ReLU(c)``
  normalised: the voxels that make this brain look older. SMOE reads where either channel is large.
- ``members`` weight maps (fits on resampled training sets) form an ensemble: the age is their mean,
  their spread is the prediction's uncertainty (``forward_members``).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Linear3D(nn.Module):
    def __init__(self, volume_shape=(61, 73, 61), pool: int = 1, members: int = 1):
        super().__init__()
        self.takes_sex = False
        self.volume_shape = tuple(int(s) for s in volume_shape)
        self.pool_size = int(pool)
        self.pool = nn.AvgPool3d(self.pool_size, ceil_mode=True) if self.pool_size > 1 else nn.Identity()
        pooled = tuple(math.ceil(s / self.pool_size) for s in self.volume_shape)
        self.register_buffer("centre", torch.zeros(1, 1, *pooled))
        self.weight = nn.Parameter(torch.zeros(int(members), 1, *pooled))
        self.bias = nn.Parameter(torch.zeros(int(members)))
        self.contributions = nn.ReLU()
        self.gradcam_layer = "contributions"
        self.smoe_layers = ("contributions",)

    def _deviation(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - self.centre

    def forward(self, x: torch.Tensor, sex: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 1) ages of the ensemble mean, through the hookable contribution layer."""
        c = self._deviation(x) * self.weight.mean(dim=0, keepdim=True)
        a = self.contributions(torch.cat([c, -c], dim=1))
        return (a[:, 0] - a[:, 1]).flatten(1).sum(dim=1, keepdim=True) + self.bias.mean()

    def forward_members(self, x: torch.Tensor, sex: torch.Tensor | None = None) -> torch.Tensor:
        """(N, members) ages of each ensemble member; their mean equals ``forward`` exactly."""
        d = self._deviation(x).flatten(1)  # (N, V)
        return d @ self.weight.flatten(1).T + self.bias

    @torch.no_grad()
    def set_fit(self, centre, weights, biases) -> None:
        """Load a fit: ``centre`` (pooled shape), ``weights`` (members, *pooled shape), ``biases``."""
        self.centre.copy_(torch.as_tensor(centre, dtype=self.centre.dtype).reshape(self.centre.shape))
        self.weight.copy_(torch.as_tensor(weights, dtype=self.weight.dtype).reshape(self.weight.shape))
        self.bias.copy_(torch.as_tensor(biases, dtype=self.bias.dtype).reshape(self.bias.shape))
