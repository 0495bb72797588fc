"""Layers shared by the built-in networks.

Every activation is its own non-inplace ``nn.ReLU`` module so that a forward
hook on a dotted name sees exactly one activation site (explain relies on it).
"""

from __future__ import annotations

import torch
from torch import nn


class _ResBlock(nn.Module):
    """Basic (two 3x3 convs) residual block in ``ndim`` dimensions; ``relu_out`` is its last activation."""

    ndim = 3

    def __init__(self, in_ch: int, out_ch: int, stride=1):
        super().__init__()
        conv = nn.Conv3d if self.ndim == 3 else nn.Conv2d
        norm = nn.BatchNorm3d if self.ndim == 3 else nn.BatchNorm2d
        stride = (stride,) * self.ndim if isinstance(stride, int) else tuple(int(x) for x in stride)
        self.conv1 = conv(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(out_ch)
        self.relu1 = nn.ReLU()
        self.conv2 = conv(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = norm(out_ch)
        self.shortcut = None
        if in_ch != out_ch or any(s != 1 for s in stride):
            self.shortcut = nn.Sequential(conv(in_ch, out_ch, 1, stride=stride, bias=False), norm(out_ch))
        self.relu_out = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu_out(y + identity)


class ResBlock3d(_ResBlock):
    """3D basic residual block (the thesis slab network)."""

    ndim = 3


class ResBlock2d(_ResBlock):
    """ResNet-34 basic block in 2D (the thesis Siamese encoder)."""

    ndim = 2


class ConvBlock3d(nn.Module):
    """SFCN-style block: conv3-BN-ReLU, then an optional 2x max-pool (after the activation, so the
    hooked ReLU keeps the block's full resolution)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, pool: bool = True):
        super().__init__()
        self.conv = nn.Conv3d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)
        self.bn = nn.BatchNorm3d(out_ch)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool3d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


class DenseHead(nn.Module):
    """Fully connected stack ``in -> widths[0] -> ... -> widths[-1]``, ReLU module after each layer
    (``relu{i}``), dropout between them; an optional final linear ``out`` maps to ``out_features``."""

    def __init__(self, in_features: int, widths=(512, 256, 128), out_features: int | None = 1,
                 dropout: float = 0.0):
        super().__init__()
        layers: list[tuple[str, nn.Module]] = []
        prev = in_features
        for i, w in enumerate(widths):
            layers.append((f"fc{i}", nn.Linear(prev, w)))
            layers.append((f"relu{i}", nn.ReLU()))
            if dropout > 0 and i < len(widths) - 1:
                layers.append((f"drop{i}", nn.Dropout(dropout)))
            prev = w
        self.layers = nn.Sequential()
        for name, mod in layers:
            self.layers.add_module(name, mod)
        self.out = nn.Linear(prev, out_features) if out_features is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(x)
        return x if self.out is None else self.out(x)


def encode_sex(sex: torch.Tensor | None, batch: int, like: torch.Tensor) -> torch.Tensor:
    """Sex as a ``(B, 1)`` float tensor on ``like``'s device; a model that uses sex refuses ``None``."""
    if sex is None:
        raise ValueError("this model takes the sex as a second input (B, 1); none was given")
    sex = torch.as_tensor(sex, dtype=like.dtype, device=like.device).reshape(-1, 1)
    if sex.shape[0] == 1 and batch > 1:
        sex = sex.expand(batch, 1)
    if sex.shape[0] != batch:
        raise ValueError(f"sex has {sex.shape[0]} rows for a batch of {batch}")
    return sex
