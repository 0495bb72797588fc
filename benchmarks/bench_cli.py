"""Scans per minute of ``napari-bavis analyze`` on CPU for a folder of synthetic scans, 1 and N workers.

    OMP_NUM_THREADS=1 python benchmarks/bench_cli.py [--scans 10] [--workers 1 2] [--voxel-mm 2]

Uses the bundled demo model when installed, else a tiny ba3d checkpoint on a 6 mm grid (then the
time is almost all preprocessing: registration on the native scan). Each setting runs the real
console command in a subprocess with --force into a fresh folder; the time includes start-up
(imports, model load, worker spawn) as a user would see it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib


def tiny_checkpoint(path: Path) -> Path:
    import torch

    from napari_bavis import models
    from napari_bavis.grid import Grid

    torch.manual_seed(0)
    grid = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 6.0)
    kwargs = {"channels": [2, 4, 4], "final_channels": 4, "head": [4], "output_bias": 60.0,
              "volume_shape": list(grid.shape)}
    card = models.default_card(
        "ba3d", name="tiny-bench", grid=grid.to_dict(), input_kind="t1", architecture_kwargs=kwargs,
        preprocessing={"bias_correction": False, "brain_extraction": True, "registration": "affine",
                       "segmentation": False, "modulation": False, "smoothing_fwhm_mm": 0.0,
                       "intensity_normalisation": "zscore"},
    )
    models.save_checkpoint(path, models.build("ba3d", **kwargs), card)
    return path


def synthetic_scans(folder: Path, n: int, voxel_mm: float) -> list[Path]:
    import numpy as np

    from napari_bavis import samples

    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        image = samples.to_scanner_space(
            samples.mni_t1(2), rotation_deg=tuple(rng.uniform(-10, 10, 3)), translation_mm=tuple(rng.uniform(-10, 10, 3)),
            voxel_size=(voxel_mm,) * 3, storage="LPS", bias_strength=0.2, noise_sd=0.02, seed=i,
        )
        path = folder / f"sub-{i + 1:03d}.nii.gz"
        nib.save(image, path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--voxel-mm", type=float, default=2.0)
    args = parser.parse_args()

    from napari_bavis import pipeline

    work = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    try:
        if "demo" in pipeline.bundled_models():
            model, sex_args = "demo", ["--sex", "F"]
        else:
            model, sex_args = str(tiny_checkpoint(work / "tiny.pt")), ["--sex", "F"]
        synthetic_scans(work / "scans", args.scans, args.voxel_mm)
        exe = Path(sys.executable).parent / "napari-bavis"
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "napari_bavis.cli"]
        rows = []
        for workers in args.workers:
            out = work / f"out-{workers}"
            start = time.perf_counter()
            done = subprocess.run(
                [*command, "analyze", str(work / "scans"), "--out", str(out), "--model", model, *sex_args,
                 "--device", "cpu", "--workers", str(workers), "--force", "--quiet"],
                capture_output=True, text=True, env={**os.environ},
            )
            seconds = time.perf_counter() - start
            ok = done.stderr.count("\n") and f"{args.scans} done, 0 failed" in done.stderr
            rows.append((workers, seconds, args.scans / seconds * 60.0, "ok" if ok else "FAILED: " + done.stderr.strip()[-200:]))
        print(f"napari-bavis analyze, {args.scans} synthetic scans at {args.voxel_mm:g} mm, CPU "
              f"({os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), "
              f"model: {'demo' if model == 'demo' else 'tiny ba3d on a 6 mm grid'}")
        print(f"{'workers':>7}  {'wall s':>7}  {'scans/min':>9}  status")
        for workers, seconds, per_minute, status in rows:
            print(f"{workers:>7}  {seconds:>7.1f}  {per_minute:>9.2f}  {status}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
