"""Small networks and a literal transcription of the papers' formulas, shared by the explain tests."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn


def conv(nd, cin, cout, k=3):
    return (nn.Conv2d if nd == 2 else nn.Conv3d)(cin, cout, k, padding=k // 2)


class SmallCNN(nn.Module):
    """conv-BN-ReLU stages with pooling, like SFCN in miniature; optional second input (sex)."""

    def __init__(self, nd=3, channels=(4, 8, 8), inplace=False, with_sex=False, bias=0.0):
        super().__init__()
        bn = nn.BatchNorm2d if nd == 2 else nn.BatchNorm3d
        pool = nn.MaxPool2d if nd == 2 else nn.MaxPool3d
        blocks, cin = [], 1
        for i, c in enumerate(channels):
            layers = [conv(nd, cin, c), bn(c), nn.ReLU(inplace=inplace)]
            if i < len(channels) - 1:
                layers.append(pool(2))
            blocks.append(nn.Sequential(*layers))
            cin = c
        self.features = nn.Sequential(*blocks)
        # pooled to 2 cells per axis, so the gradient varies in space (with global pooling it would not)
        self.head = nn.Linear(cin * 2**nd + (1 if with_sex else 0), 1)
        self.with_sex = with_sex
        with torch.no_grad():
            self.head.bias.fill_(bias)
        self.gap = nn.AdaptiveAvgPool2d(2) if nd == 2 else nn.AdaptiveAvgPool3d(2)

    def forward(self, x, sex=None):
        f = self.gap(self.features(x)).flatten(1)
        if self.with_sex:
            f = torch.cat([f, sex if sex is not None else torch.zeros_like(f[:, :1])], 1)
        return self.head(f)


def randomise_bn(model, seed=0):
    """Non-trivial BatchNorm statistics so eval mode differs from train mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


def capture_reference(model, args, layer, target=lambda out: out[:, 0]):
    """Activations and gradients of ``layer`` from an ordinary full backward (eval mode, no in-place nets)."""
    model.eval()
    store = {}

    def hook(module, inp, out):
        out.retain_grad()
        store["a"] = out

    handle = layer.register_forward_hook(hook)
    try:
        out = model(*args)
    finally:
        handle.remove()
    score = target(out)
    score.sum().backward()
    model.zero_grad(set_to_none=True)
    return store["a"].detach().double().numpy(), store["a"].grad.double().numpy(), score.detach().double().numpy()


def ref_gradcam(a, g, signed=False):
    """Selvaraju et al., channel by channel."""
    maps = []
    for ab, gb in zip(a, g):
        cam = np.zeros(ab.shape[1:])
        for k in range(ab.shape[0]):
            cam += gb[k].mean() * ab[k]
        maps.append(cam if signed else np.maximum(cam, 0))
    return np.stack(maps)


def ref_gradcampp(a, g, score=None):
    """Chattopadhyay et al. eq. 19 with S = exp(Y) written out, when ``score`` is given (keep it small)."""
    maps = []
    for i, (ab, gb) in enumerate(zip(a, g)):
        scale = 1.0 if score is None else np.exp(score[i])
        cam = np.zeros(ab.shape[1:])
        for k in range(ab.shape[0]):
            # dS/dA, d2S/dA2, d3S/dA3 for S = exp(Y), Y piecewise linear in A (paper eqs. 17-18)
            d1, d2, d3 = scale * gb[k], scale * gb[k] ** 2, scale * gb[k] ** 3
            denom = 2 * d2 + ab[k].sum() * d3
            alpha = np.where(denom != 0, d2 / np.where(denom != 0, denom, 1), 0)
            cam += (alpha * np.maximum(d1, 0)).sum() * ab[k]
        maps.append(np.maximum(cam, 0))
    return np.stack(maps)


def ref_smoe_layer(a, eps=1e-7):
    x = np.maximum(a, 0) + eps
    m = x.mean(axis=1)
    return m * (np.log(m) - np.log(x).mean(axis=1))


def ref_normalise(layer_map, how="gaussian"):
    flat = layer_map.reshape(layer_map.shape[0], -1)
    out = []
    for row in flat:
        if how == "gaussian":
            out.append(stats.norm.cdf(row, loc=row.mean(), scale=row.std()))
        else:
            x = np.maximum(row, 1e-7)
            s = np.log(x.mean()) - np.log(x).mean()
            k = (3 - s + np.sqrt((s - 3) ** 2 + 24 * s)) / (12 * s)
            out.append(stats.gamma.cdf(x, a=k, scale=x.mean() / k))
    return np.stack(out).reshape(layer_map.shape)


def upsample(maps, size):
    t = torch.as_tensor(maps, dtype=torch.float64)[:, None]
    mode = {2: "bilinear", 3: "trilinear"}[len(size)]
    return F.interpolate(t, size=tuple(size), mode=mode, align_corners=False)[:, 0].numpy()


def max_normalise(m):
    m = np.asarray(m, dtype=np.float64)
    return np.stack([r / r.max() if r.max() > 0 else r for r in m])


def corr(x, y):
    return float(np.corrcoef(np.ravel(x), np.ravel(y))[0, 1])


class SlabTiling:
    """Tiling protocol: a volume cut into slabs of ``depth`` slices along its last axis."""

    def __init__(self, shape, depth):
        self.shape, self.depth = tuple(shape), depth
        self.k = shape[-1] // depth
        self.tile_spatial_shape = (*shape[:-1], depth)

    def cut(self, x):  # (N, C, X, Y, Z) -> (N*k, C, X, Y, depth), input-major
        return _cut(x, self.k, self.depth)

    def assemble(self, tile_maps):
        return torch.cat(list(tile_maps), dim=-1)


def _cut(x, k, depth):
    return torch.cat([x[..., j * depth : (j + 1) * depth].unsqueeze(1) for j in range(k)], dim=1).flatten(0, 1)


class SlabNet(nn.Module):
    """Thesis-style slab model: each slab through a shared 3D trunk, scores summed over slabs."""

    def __init__(self, shape=(16, 16, 16), depth=4):
        super().__init__()
        self.tiling = SlabTiling(shape, depth)
        self.trunk = nn.Sequential(conv(3, 1, 4), nn.ReLU(), nn.MaxPool3d(2), conv(3, 4, 6), nn.ReLU())
        self.head = nn.Linear(6, 1)
        self.gradcam_layer = "trunk.4"
        self.smoe_layers = ("trunk.1", "trunk.4")

    def tile_score(self, tiles):
        return self.head(self.trunk(tiles).mean(dim=(2, 3, 4)))  # (T, 1)

    def forward(self, x):
        n = x.shape[0]
        return self.tile_score(self.tiling.cut(x)).reshape(n, -1).sum(1, keepdim=True)


class SliceTiling:
    """2D slices along the last axis of a volume, as the thesis Siamese encoder sees them."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        self.tile_spatial_shape = tuple(shape[:-1])

    def assemble(self, tile_maps):  # (k, X, Y) -> (X, Y, k)
        return tile_maps.permute(1, 2, 0)


class SliceEncoder(nn.Module):
    """A 2D encoder applied to every axial slice; the volume embedding is the normalised mean."""

    def __init__(self, shape=(16, 16, 6), dim=5):
        super().__init__()
        self.tiling = SliceTiling(shape)
        self.trunk = nn.Sequential(conv(2, 1, 4), nn.ReLU(), nn.MaxPool2d(2), conv(2, 4, 8), nn.ReLU())
        self.proj = nn.Linear(8, dim)
        self.gradcam_layer = "trunk.4"

    def slices(self, x):  # (N, 1, X, Y, Z) -> (N*Z, 1, X, Y), input-major
        return x.permute(0, 4, 1, 2, 3).flatten(0, 1)

    def forward(self, x):
        n, z = x.shape[0], x.shape[-1]
        e = self.proj(self.trunk(self.slices(x)).mean(dim=(2, 3))).reshape(n, z, -1).mean(1)
        return F.normalize(e, dim=1)
