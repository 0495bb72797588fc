"""Parameters, forward time and peak memory of every built-in architecture at its true input size.

    OMP_NUM_THREADS=2 python benchmarks/bench_models.py [--device cpu|cuda] [--repeats 3]

Forward time: median of ``--repeats`` timed forwards after one warm-up, batch 1, inference mode.
Peak memory: on CPU the growth of the process's peak RSS during the forwards (ru_maxrss; each
architecture runs in a fresh subprocess so earlier ones do not mask it); on CUDA
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CONFIGS = [
    ("ba_slab", {}),
    ("ba_slab", {"width": 32}),
    ("ba3d", {}),
    ("sfcn", {}),
    ("siamese2d", {}),
    ("siamese2d", {"width": 16}),
    ("siamese3d", {}),
]


def measure(name: str, kwargs: dict, device: str, repeats: int) -> dict:
    import resource

    import torch

    from napari_bavis import models

    torch.manual_seed(0)
    dev = torch.device(device)
    model = models.build(name, **kwargs).to(dev).eval()
    shape = tuple(models.info(name).grid.shape)
    x = torch.rand(1, 1, *shape, device=dev)
    sex = torch.zeros(1, 1, device=dev)
    run = (lambda: model(x, sex)) if model.task == "brain_age" else (lambda: model(x))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.inference_mode():
        run()
        for _ in range(repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            run()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return {
        "architecture": name, "kwargs": kwargs, "input": "x".join(map(str, shape)),
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "forward_s": statistics.median(times), "peak_mb": peak_mb, "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: JSON [name, kwargs]
    args = ap.parse_args()
    if args.one:
        name, kwargs = json.loads(args.one)
        print(json.dumps(measure(name, kwargs, args.device, args.repeats)))
        return
    rows = []
    for name, kwargs in CONFIGS:
        out = subprocess.run(
            [sys.executable, __file__, "--device", args.device, "--repeats", str(args.repeats),
             "--one", json.dumps([name, kwargs])],
            capture_output=True, text=True, check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"device: {args.device}, threads: {rows[0]['threads']}, batch 1, median of {args.repeats}")
    print(f"| {'architecture':<28} | {'input':<11} | {'params (M)':>10} | {'forward (s)':>11} | {'peak mem (MB)':>13} |")
    print(f"|{'-' * 30}|{'-' * 13}|{'-' * 12}|{'-' * 13}|{'-' * 15}|")
    for r in rows:
        label = r["architecture"] + (" " + ",".join(f"{k}={v}" for k, v in r["kwargs"].items()) if r["kwargs"] else "")
        print(f"| {label:<28} | {r['input']:<11} | {r['params_m']:>10.2f} | {r['forward_s']:>11.3f} | {r['peak_mb']:>13.0f} |")


if __name__ == "__main__":
    main()
