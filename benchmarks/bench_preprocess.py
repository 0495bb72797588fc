"""Time per preprocessing step for a 1 mm 256x256x176 scan and a 1.2 mm scan (CPU).

    python benchmarks/bench_preprocess.py [--repeats 2] [--threads 2]

Scans are nilearn's MNI152 T1 moved into a scanner pose (rotation, shift, LPS storage,
bias field, noise): no download. The first run (cold: templates loaded from nilearn's
wheel) is reported separately; the table gives the median of ``--repeats`` warm runs
and their CPU time, which, unlike wall time, does not grow when the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import nibabel as nib
import numpy as np


def scan_on_fixed_grid(shape, voxel_mm, rotation_deg, translation_mm, seed=0) -> nib.Nifti1Image:
    """The 1 mm template in a scanner pose, stored LPS on a grid of exactly ``shape`` voxels."""
    from nibabel.processing import resample_from_to
    from napari_bavis.samples import mni_t1, rigid_matrix

    tpl = mni_t1(1)
    pose = rigid_matrix(rotation_deg, translation_mm, center_mm=(0, -18, 18))
    moved = nib.Nifti1Image(np.asarray(tpl.dataobj, np.float32), pose @ tpl.affine)
    affine = np.diag([-voxel_mm, -voxel_mm, voxel_mm, 1.0])  # LPS storage
    centre = np.array([(n - 1) / 2 for n in shape])
    affine[:3, 3] = np.array([0.0, -18.0, 18.0]) - affine[:3, :3] @ centre
    data = np.asarray(resample_from_to(moved, (shape, affine), order=1).dataobj, np.float32)
    rng = np.random.default_rng(seed)
    axes = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij", sparse=True)
    data *= np.exp(0.3 * (0.6 * axes[0] - 0.8 * axes[1] + 0.5 * axes[2] * axes[0]))
    data = np.abs(data + rng.normal(0, 0.02, shape).astype(np.float32))
    return nib.Nifti1Image(data, affine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="SimpleITK threads (the target machine has 2 cores)")
    args = parser.parse_args()

    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    from napari_bavis.preprocess import PreprocessSpec, preprocess

    spec = PreprocessSpec(input_kind="gm", modulation=True, smoothing_fwhm_mm=4.0)  # the thesis's smwc1-like input
    scans = {
        "1 mm 256x256x176": scan_on_fixed_grid((256, 256, 176), 1.0, (12, -8, 6), (8, -14, 22)),
        "1.2 mm 214x214x147": scan_on_fixed_grid((214, 214, 147), 1.2, (-15, 10, -5), (-10, 20, 5), seed=1),
    }
    columns, cold, qc = {}, {}, {}
    for name, scan in scans.items():
        t0 = time.perf_counter()
        first = preprocess(scan, spec)
        cold[name] = time.perf_counter() - t0
        runs, cpu = [], []
        for _ in range(args.repeats):
            c0 = time.process_time()
            result = preprocess(scan, spec)
            runs.append(result.timings)
            cpu.append(dict(result.record["cpu_seconds"], total=time.process_time() - c0))
        columns[f"{name} wall"] = {step: statistics.median(r[step] for r in runs) for step in runs[0]}
        columns[f"{name} CPU"] = {step: statistics.median(r[step] for r in cpu) for step in runs[0]}
        cold[f"{name} CPU"] = float("nan")
        cold[f"{name} wall"] = cold.pop(name)
        qc[name] = first.qc

    steps = list(next(iter(columns.values())))
    width = max(len(s) for s in steps + ["total, first (cold) run"]) + 2
    header = "| step".ljust(width + 2) + "| " + " | ".join(f"{n:>24}" for n in columns) + " |"
    print(f"\nCPU, {args.threads} SimpleITK threads, median of {args.repeats} warm runs, seconds; "
          f"load average before/after: {LOAD_BEFORE} / {os.getloadavg()[0]:.2f}.\n"
          "Wall time grows with the load of a shared machine; CPU time (process, all threads) does not: "
          "on an idle 2-core machine the wall time lies between CPU/2 and CPU.")
    print(header)
    print("|" + "-" * (width + 1) + "|" + "|".join("-" * 26 for _ in columns) + "|")
    for step in steps:
        print(f"| {step}".ljust(width + 2) + "| " + " | ".join(f"{columns[n][step]:>24.2f}" for n in columns) + " |")
    print("| total, first (cold) run".ljust(width + 2) + "| " + " | ".join(f"{cold[n]:>24.2f}" for n in columns) + " |")
    for name in qc:
        q = qc[name]
        print(f"{name}: registration correlation {q['registration_correlation']:.3f}, mask {q['mask_volume_ml']:.0f} ml, "
              f"GM {q['gm_volume_ml']:.0f} ml, warnings {q['warnings']}")


LOAD_BEFORE = f"{os.getloadavg()[0]:.2f}"

if __name__ == "__main__":
    main()
