"""Siamese encoders: one branch, used on both scans of a pair; the embedding is L2-normalised, so
cosine similarity is a dot product.

``siamese2d`` is the thesis encoder (ResNet-34-style 2D trunk on axial slices 121x145, global
average pooling, dense 512-256-128 with ReLU, L2-normalised 128-d embedding); a volume's embedding
is the L2-normalised mean of its slice embeddings. ``siamese3d`` is the same head on a 3D trunk
run on the whole volume.

Deviation from the thesis: Keras "BN without scale" (no gamma) is a standard BatchNorm here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ba3d import Trunk3d
from .blocks import DenseHead, ResBlock2d
from .tiling import SliceTiling


class EmbeddingHead(nn.Module):
    """Dense 512-256-128 (ReLU after each, dropout between), then L2 normalisation."""

    def __init__(self, in_features: int, widths=(512, 256, 128), dropout: float = 0.4):
        super().__init__()
        self.dense = DenseHead(in_features, widths, None, dropout)
        self.dim = widths[-1]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.dense(h), dim=1, eps=1e-12)


class Siamese2D(nn.Module):
    def __init__(self, width: int = 64, blocks=(3, 4, 6, 3), slice_shape=(121, 145),
                 head=(512, 256, 128), dropout: float = 0.4, slice_batch: int = 32):
        super().__init__()
        self.tiling = SliceTiling(tuple(int(s) for s in slice_shape))
        self.slice_batch = int(slice_batch)
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(1, width, 7, stride=2, padding=3, bias=False))
        self.stem.add_module("bn", nn.BatchNorm2d(width))
        self.stem.add_module("relu", nn.ReLU())
        self.stem.add_module("pool", nn.MaxPool2d(3, stride=2, padding=1))
        self.stages = nn.ModuleList()
        prev = width
        for s, n in enumerate(blocks):
            ch = width * 2 ** s
            stage = nn.Sequential()
            for i in range(n):
                stage.add_module(str(i), ResBlock2d(prev, ch, 2 if (i == 0 and s > 0) else 1))
                prev = ch
            self.stages.append(stage)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = EmbeddingHead(prev, head, dropout)
        self.embedding_dim = self.head.dim
        last = [f"stages.{s}.{len(blk) - 1}.relu_out" for s, blk in enumerate(self.stages)]
        self.gradcam_layer = last[-1]
        self.smoe_layers = ("stem.relu", *last)

    def embed_slices(self, x: torch.Tensor) -> torch.Tensor:
        """Axial slices (N, 1, 121, 145) -> (N, D) embeddings, one per slice."""
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        return self.head(torch.flatten(self.pool(h), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Volumes (B, 1, 121, 145, Z) -> (B, D); slices (B, 1, 121, 145) are embedded one by one."""
        if x.ndim == 4:
            return self.embed_slices(x)
        b, nz = x.shape[0], x.shape[-1]
        tiles = self.tiling.split(x)
        if not torch.is_inference_mode_enabled() or tiles.shape[0] <= self.slice_batch:
            # One batch: hooks see (B * Z) activations, as the tiling contract expects. Only under
            # inference_mode (prediction, nothing hooked) are slices run in chunks to save memory.
            per_slice = self.embed_slices(tiles)
        else:
            per_slice = torch.cat([self.embed_slices(t) for t in tiles.split(self.slice_batch)])
        return F.normalize(per_slice.reshape(b, nz, -1).mean(dim=1), dim=1, eps=1e-12)


class Siamese3D(nn.Module):
    def __init__(self, channels=(8, 16, 32, 64, 64), final_channels: int = 64, head=(512, 256, 128),
                 dropout: float = 0.4, volume_shape=(121, 145, 121)):
        super().__init__()
        self.volume_shape = tuple(int(s) for s in volume_shape)
        self.trunk = Trunk3d(channels, final_channels)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = EmbeddingHead(final_channels, head, dropout)
        self.embedding_dim = self.head.dim
        self.gradcam_layer = "trunk." + self.trunk.stage_activations[-1]
        self.smoe_layers = tuple("trunk." + n for n in self.trunk.stage_activations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.trunk(x)), 1))
