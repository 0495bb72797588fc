"""Model-parameter randomisation test (Adebayo et al. 2018) for every explanation method.

    python benchmarks/sanity_mprt.py

A small 3D CNN is trained (about a minute on CPU) on synthetic volumes: smooth noise plus one
bright blob placed at random inside a known box; the target is the blob's amplitude (in "years",
x10). Its maps should concentrate in that box (first table). Then its
layers are re-initialised cumulatively from the output down to the input, and each method's maps
are compared with the trained model's maps by Spearman rank correlation (second table): a map
that explains the model must change, i.e. the correlation must fall, as more layers are randomised.
SMOE reads activations only, so it cannot react to layers above the ones it reads; that is
expected and shown, not hidden.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_bavis.explain import compute_maps
from napari_bavis.explain.sanity import model_randomisation

SIZE = 16
BOX = (slice(2, 8), slice(8, 14), slice(5, 11))
METHODS = ("gradcam", "gradcam++", "smooth-gradcam++", "smoe", "smoe*gradcam++")


def volumes(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 1, SIZE + 2, SIZE + 2, SIZE + 2, generator=gen)
    x = F.avg_pool3d(x, 3, stride=1) * 1.5  # textured background, std about 0.3
    amplitude = torch.rand(n, generator=gen) * 3.0
    grid = torch.stack(torch.meshgrid(*[torch.arange(SIZE, dtype=torch.float32)] * 3, indexing="ij"))
    for i in range(n):
        centre = [torch.randint(b.start + 1, b.stop - 1, (1,), generator=gen).item() for b in BOX]
        d2 = sum((grid[a] - centre[a]) ** 2 for a in range(3))
        x[i, 0] += amplitude[i] * torch.exp(-d2 / (2 * 1.2**2))
    return x, amplitude[:, None] * 10.0


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.act1 = nn.Conv3d(1, 6, 3, padding=1), nn.ReLU()
        self.conv2, self.act2 = nn.Conv3d(6, 8, 3, padding=1), nn.ReLU()
        self.conv3, self.act3 = nn.Conv3d(8, 8, 3, padding=1), nn.ReLU()
        self.head = nn.Linear(8 * (SIZE // 2) ** 3, 1)
        self.gradcam_layer = "act3"
        self.smoe_layers = ("act1", "act2", "act3")

    def forward(self, x):
        h = F.max_pool3d(self.act1(self.conv1(x)), 2)
        h = self.act2(self.conv2(h))
        return self.head(self.act3(self.conv3(h)).flatten(1))


def train(seconds_budget: float, seed: int) -> tuple[Net, float]:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = Net()
    x, y = volumes(1024, gen)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    t0 = time.perf_counter()
    step = 0
    while time.perf_counter() - t0 < seconds_budget and step < 1500:
        idx = torch.randint(0, len(x), (16,), generator=gen)
        loss = F.mse_loss(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
    net.eval()
    xt, yt = volumes(256, gen)
    with torch.no_grad():
        r = np.corrcoef(net(xt)[:, 0].numpy(), yt[:, 0].numpy())[0, 1]
    return net, float(r), step


def maps_of(net, x, smooth_n):
    return compute_maps(net, x, METHODS, smooth_n=smooth_n, smooth_chunk=smooth_n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-seconds", type=float, default=60.0)
    parser.add_argument("--n-test", type=int, default=8)
    parser.add_argument("--smooth-n", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))

    t0 = time.perf_counter()
    net, r, steps = train(args.train_seconds, args.seed)
    print(f"trained {steps} steps in {time.perf_counter() - t0:.0f} s; test correlation prediction vs target r = {r:.3f}")
    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    x, _ = volumes(args.n_test, torch.Generator().manual_seed(args.seed + 1))
    trained = maps_of(net, x, args.smooth_n)

    inside = np.zeros((SIZE,) * 3, bool)
    inside[BOX] = True
    print("\nTrained model: do the maps point at the box that defines the target? (mean over test volumes)")
    print(f"| {'method':17s} | energy in box | pointing game | box is {inside.mean():.1%} of the volume")
    print(f"|{'-' * 19}|--------------:|--------------:|")
    for m in METHODS:
        maps = trained[m]
        energy = np.mean([mp[inside].sum() / max(mp.sum(), 1e-12) for mp in maps])
        hits = np.mean([inside[np.unravel_index(np.argmax(mp), mp.shape)] for mp in maps])
        print(f"| {m:17s} | {energy:13.2f} | {hits:13.2f} |")

    order = ("head", "conv3", "conv2", "conv1")  # top-down
    print("\nCascading randomisation: Spearman rank correlation with the trained model's maps (mean over test volumes)")
    print(f"| {'randomised layers':30s} | " + " | ".join(f"{m:>16s}" for m in METHODS) + " |")
    print(f"|{'-' * 32}|" + "|".join("-" * 17 + ":" for _ in METHODS) + "|")
    # the same core function as `napari-bavis analyze --sanity-check` (napari_bavis.explain.sanity)
    result = model_randomisation(net, x, METHODS, layers=order, seed=1234, smooth_n=args.smooth_n,
                                 smooth_chunk=args.smooth_n)
    for depth, step in enumerate(result["steps"], start=1):
        cells = [f"{step['spearman'][m]:16.3f}" if step["spearman"][m] is not None else f"{'(zero map)':>16s}"
                 for m in METHODS]
        label = " + ".join(order[:depth])
        print(f"| {label:30s} | " + " | ".join(cells) + " |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
