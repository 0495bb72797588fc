"""Full-volume brain-age regressor: an SFCN-style trunk (conv3-BN-ReLU-maxpool blocks, a last
unpooled 3x3x3 block and a 1x1x1 block), global average pooling and a small regression head with
the sex (optional) concatenated to the pooled features. The default for new training.

``gradcam_layer`` (an architecture kwarg, so the card records it): the trunk activation Grad-CAM
hooks, by default the last stage's ReLU. A model can name an earlier, finer stage when the last
one is too coarse to localise what it reads (the bundled demo: 6 mm instead of 12 mm cells;
docs/training.md says why)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CheckpointError
from .blocks import ConvBlock3d, DenseHead, encode_sex


class Trunk3d(nn.Module):
    """Blocks ``block_0 ... block_{n-1}`` (pooled after all but the last) then ``block_final`` (1x1x1).
    ``stage_activations`` lists the last ReLU of each resolution."""

    def __init__(self, channels=(8, 16, 32, 64, 64), final_channels: int = 64):
        super().__init__()
        prev = 1
        names = []
        for i, ch in enumerate(channels):
            pooled = i < len(channels) - 1
            self.add_module(f"block_{i}", ConvBlock3d(prev, ch, 3, pool=pooled))
            if pooled:
                names.append(f"block_{i}.relu")
            prev = ch
        self.block_final = ConvBlock3d(prev, final_channels, 1, pool=False)
        names.append("block_final.relu")
        self.stage_activations = tuple(names)
        self.out_channels = final_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for mod in self.children():
            x = mod(x)
        return x


class BA3D(nn.Module):
    def __init__(self, channels=(8, 16, 32, 64, 64), final_channels: int = 64, use_sex: bool = True,
                 head=(64,), dropout: float = 0.0, volume_shape=(121, 145, 121),
                 output_bias: float = 0.0, gradcam_layer: str | None = None):
        super().__init__()
        self.takes_sex = bool(use_sex)
        self.volume_shape = tuple(int(s) for s in volume_shape)
        self.trunk = Trunk3d(channels, final_channels)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = DenseHead(final_channels + int(self.takes_sex), head, 1, 0.0)
        # Starting near a plausible age makes early training (and an untrained demo) less absurd.
        nn.init.constant_(self.head.out.bias, float(output_bias))
        self.smoe_layers = tuple("trunk." + n for n in self.trunk.stage_activations)
        self.gradcam_layer = gradcam_layer or self.smoe_layers[-1]
        if self.gradcam_layer not in dict(self.named_modules()):
            raise CheckpointError(f"gradcam_layer {gradcam_layer!r} is not a layer of this ba3d; "
                             f"its stage activations are {', '.join(self.smoe_layers)}")

    def forward(self, x: torch.Tensor, sex: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.flatten(self.pool(self.trunk(x)), 1)
        h = self.dropout(h)
        if self.takes_sex:
            h = torch.cat([h, encode_sex(sex, x.shape[0], h)], dim=1)
        return self.head(h)
