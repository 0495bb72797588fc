"""The Simple Fully Convolutional Network of Peng et al. 2021 (MIT licence), layer for layer.

Module names match the published code, so the distributed state_dict (saved from
``nn.DataParallel``; keys ``module.feature_extractor.conv_i.{0,1}.*`` and
``module.classifier.conv_6.*``) loads once the ``module.`` prefix is stripped, with no renaming.
Input: 160x192x160 at 1 mm (FSL MNI152 space, centre crop), intensities divided by their mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SFCN(nn.Module):
    """Exact SFCN; ``forward`` returns the log-softmax over the age bins as (B, output_dim)
    (the published code wraps the (B, 40, 1, 1, 1) tensor in a list; the weights are the same)."""

    def __init__(self, channel_number=(32, 64, 128, 256, 256, 64), output_dim: int = 40,
                 dropout: bool = True, avg_shape=(5, 6, 5)):
        super().__init__()
        n_layer = len(channel_number)
        self.feature_extractor = nn.Sequential()
        for i in range(n_layer):
            in_ch = 1 if i == 0 else channel_number[i - 1]
            last = i == n_layer - 1
            self.feature_extractor.add_module(
                f"conv_{i}",
                self._conv_layer(in_ch, channel_number[i], maxpool=not last,
                                 kernel_size=1 if last else 3, padding=0 if last else 1),
            )
        self.classifier = nn.Sequential()
        self.classifier.add_module("average_pool", nn.AvgPool3d(tuple(avg_shape)))
        if dropout:
            self.classifier.add_module("dropout", nn.Dropout(0.5))
        self.classifier.add_module(f"conv_{n_layer}",
                                   nn.Conv3d(channel_number[-1], output_dim, kernel_size=1, padding=0))
        # Published order: conv, BN, max-pool, ReLU (index 3); the 1x1 block: conv, BN, ReLU (index 2).
        # The ReLU follows the pool, so the last pooled block shares its resolution with the 1x1
        # block: the latter is that stage's last activation.
        acts = [f"feature_extractor.conv_{i}.3" for i in range(n_layer - 2)]
        acts.append(f"feature_extractor.conv_{n_layer - 1}.2")
        self.gradcam_layer = acts[-1]
        self.smoe_layers = tuple(acts)

    @staticmethod
    def _conv_layer(in_ch: int, out_ch: int, maxpool: bool, kernel_size: int, padding: int) -> nn.Sequential:
        layers = [nn.Conv3d(in_ch, out_ch, kernel_size=kernel_size, padding=padding), nn.BatchNorm3d(out_ch)]
        if maxpool:
            layers.append(nn.MaxPool3d(2, stride=2))
        layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.classifier(self.feature_extractor(x))
        return F.log_softmax(out.flatten(1), dim=1)


class SFCNBrainAge(SFCN):
    """SFCN whose ``forward`` gives the expected age Σ p·bin_centre as (B, 1), as every brain-age
    model here does. Same state_dict keys as :class:`SFCN` (the bin centres are not saved)."""

    takes_sex = False

    def __init__(self, channel_number=(32, 64, 128, 256, 256, 64), output_dim: int = 40,
                 dropout: bool = True, avg_shape=(5, 6, 5), age_range=(42.0, 82.0),
                 volume_shape=(160, 192, 160)):
        super().__init__(channel_number, output_dim, dropout, avg_shape)
        lo, hi = float(age_range[0]), float(age_range[1])
        step = (hi - lo) / output_dim
        centres = lo + step / 2 + step * torch.arange(output_dim, dtype=torch.float32)
        self.register_buffer("bin_centres", centres, persistent=False)
        self.volume_shape = tuple(int(s) for s in volume_shape)

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        return SFCN.forward(self, x)

    def forward(self, x: torch.Tensor, sex: torch.Tensor | None = None) -> torch.Tensor:
        p = self.log_probs(x).exp()
        return (p * self.bin_centres.to(p.dtype)).sum(dim=1, keepdim=True)
