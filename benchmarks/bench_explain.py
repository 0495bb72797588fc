"""Explanation cost on an SFCN-shaped 3D CNN at 121x145x121: ours vs the floor, MONAI and captum.

    python benchmarks/bench_explain.py --repeats 3

Times: all rows run in one process, interleaved round-robin (each row on its own copy of the same
weights), so a change in machine load hits every row alike; median of ``--repeats`` rounds after
one warm-up round. Memory: each row once more in a fresh subprocess, "peak MiB" = that process's
peak RSS (VmHWM, reset just before) over a warm-up run and a measured run, minus its RSS then. The machine may
be shared, so the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SHAPE = (121, 145, 121)
CHANNELS = (32, 64, 128, 256, 256, 64)
ROWS = ("forward", "floor", "ours", "monai_gradcam", "monai_gradcampp", "captum_layergradcam")
LABELS = {
    "forward": "forward only (no_grad)",
    "floor": "floor: forward + grad to hooked layer",
    "ours": "compute_maps gradcam+gradcam+++smoe(6)",
    "monai_gradcam": "MONAI GradCAM",
    "monai_gradcampp": "MONAI GradCAMpp",
    "captum_layergradcam": "captum LayerGradCam (+upsample)",
}


def build():
    import torch
    from torch import nn

    class SFCNShaped(nn.Module):
        """Peng et al.'s SFCN layout with a scalar (brain age) head."""

        def __init__(self):
            super().__init__()
            layers, cin = [], 1
            for i, c in enumerate(CHANNELS):
                last = i == len(CHANNELS) - 1
                block = [nn.Conv3d(cin, c, 1 if last else 3, padding=0 if last else 1), nn.BatchNorm3d(c)]
                if not last:
                    block.append(nn.MaxPool3d(2))
                block.append(nn.ReLU())
                layers.append(nn.Sequential(*block))
                cin = c
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Dropout(0.5), nn.Conv3d(cin, 1, 1))

        def forward(self, x):
            return self.classifier(self.features(x)).flatten(1) + 60.0

    torch.manual_seed(0)
    model = SFCNShaped().eval()
    x = torch.randn(1, 1, *SHAPE, generator=torch.Generator().manual_seed(0))
    acts = [f"features.{i}.{len(b) - 1}" for i, b in enumerate(model.features)]
    return model, x, acts


def make_runner(row, model, x, acts):
    import torch
    import torch.nn.functional as F

    layer_name = acts[-1]
    layer = dict(model.named_modules())[layer_name]
    if row == "forward":

        def run():
            with torch.no_grad():
                model(x)

    elif row == "floor":

        def run():
            store = {}
            handle = layer.register_forward_hook(lambda m, i, o: store.update(a=o))
            try:
                out = model(x)
            finally:
                handle.remove()
            torch.autograd.grad(out[:, 0].sum(), [store["a"]])

    elif row == "ours":
        from napari_bavis.explain import compute_maps

        def run():
            compute_maps(model, x, ("gradcam", "gradcam++", "smoe"), layer=layer_name, smoe_layers=acts)

    elif row in ("monai_gradcam", "monai_gradcampp"):
        from monai.visualize import GradCAM, GradCAMpp

        cam = (GradCAM if row == "monai_gradcam" else GradCAMpp)(nn_module=model, target_layers=layer_name)

        def run():
            cam(x, class_idx=0)

    elif row == "captum_layergradcam":
        from captum.attr import LayerAttribution, LayerGradCam

        gc = LayerGradCam(model, layer)

        def run():
            attr = gc.attribute(x, target=0, relu_attributions=True)
            LayerAttribution.interpolate(attr, SHAPE, interpolate_mode="trilinear")
            F.relu(attr)

    else:
        raise SystemExit(f"unknown row {row}")
    return run


def rss_mib(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(row: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    model, x, acts = build()
    run = make_runner(row, model, x, acts)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
    before = rss_mib()
    run()
    run()
    peak = rss_mib("VmHWM") - before
    print(json.dumps({"row": row, "peak_mib": peak}))


def interleaved_times(rows, repeats: int, threads: int) -> dict[str, list[float]]:
    import copy

    import torch

    torch.set_num_threads(threads)
    model, x, acts = build()
    runners = {row: make_runner(row, copy.deepcopy(model), x, acts) for row in rows}
    times: dict[str, list[float]] = {row: [] for row in rows}
    for round_ in range(repeats + 1):
        for row, run in runners.items():
            t0 = time.perf_counter()
            run()
            if round_:  # round 0 is the warm-up
                times[row].append(time.perf_counter() - t0)
        print(f"  round {round_}/{repeats} done (load {os.getloadavg()[0]:.2f})", flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=ROWS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.threads)
        return
    import torch

    print(f"SFCN-shaped 3D CNN {'-'.join(map(str, CHANNELS))}, input 1x1x{'x'.join(map(str, SHAPE))}, "
          f"torch {torch.__version__} CPU, {args.threads} threads, median of {args.repeats} interleaved "
          f"rounds after 1 warm-up round, {os.cpu_count()} CPUs")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    times = interleaved_times(args.rows, args.repeats, args.threads)
    results = {row: {"median_s": statistics.median(t), "times": t} for row, t in times.items()}
    for row in args.rows:
        cmd = [sys.executable, __file__, "--child", row, "--threads", str(args.threads)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            print(f"{row}: memory run failed\n{proc.stderr[-2000:]}")
            results[row]["peak_mib"] = float("nan")
            continue
        results[row]["peak_mib"] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_mib"]

    floor = results.get("floor", {}).get("median_s")
    print()
    print(f"| {'method':42s} | median s | x floor | peak MiB | runs (s)")
    print(f"|{'-' * 44}|---------:|--------:|---------:|---------")
    for row in args.rows:
        if row not in results:
            continue
        r = results[row]
        ratio = f"{r['median_s'] / floor:.2f}" if floor else "-"
        runs = " ".join(f"{t:.2f}" for t in r["times"])
        print(f"| {LABELS[row]:42s} | {r['median_s']:8.2f} | {ratio:>7s} | {r['peak_mib']:8.0f} | {runs}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if {"ours", "floor", "monai_gradcam", "monai_gradcampp"} <= results.keys():
        ours = results["ours"]["median_s"]
        monai = results["monai_gradcam"]["median_s"] + results["monai_gradcampp"]["median_s"]
        print(f"target ours <= 1.3 x floor: {ours / floor:.2f} x -> {'met' if ours <= 1.3 * floor else 'NOT met'}")
        print(f"target ours <= 0.3 x (MONAI GradCAM + GradCAMpp): {ours / monai:.2f} x -> "
              f"{'met' if ours <= 0.3 * monai else 'NOT met'}")


if __name__ == "__main__":
    main()
