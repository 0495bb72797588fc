"""The whole pipeline on real T1 scans (OpenNeuro ds002748 beside the project): QC, time, brain age
with its uncertainty and GM fraction per scan; the QC distribution; GM fraction vs age; robustness
to pose, storage order, voxel size and a skull; the cross-validated model table; CLI wall time.

    OMP_NUM_THREADS=2 python benchmarks/bench_real.py [--limit N] [--robust 3] [--cli 3] [--no-cv]

Needs ../shared/data/ds002748 (or --bids DIR). Prints markdown tables (docs/training.md quotes them).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_bavis import pipeline
from napari_bavis.samples import resampled, restored, rotated, with_skull
from napari_bavis.errors import BavisError
from napari_bavis.training.real_data import read_participants

DEFAULT_BIDS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ds002748"


def variants(img):
    yield "original", img
    for axis, name in ((0, "pitch"), (1, "roll"), (2, "yaw")):
        for deg in (-15, 15):
            yield f"{name} {deg:+d} deg", rotated(img, deg, axis)
    yield "stored S,R,A with R reversed", restored(img)
    yield "resampled to 1.2 mm", resampled(img, 1.2)
    yield "with a synthetic skull", with_skull(img)


def run(args) -> None:
    people = read_participants(args.bids)
    if args.limit:
        people = people[: args.limit]
    rows, ages, gm = [], [], []
    print(f"## Real scans ({len(people)}, model {args.model}, load {os.getloadavg()[0]:.1f})\n")
    print("| scan | age | brain age ± SD | r raw | r smoothed | head scale | GM fraction | s | warnings |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|---|")
    for p in people:
        t0 = time.perf_counter()
        try:
            a = pipeline.analyze(p.t1, model=args.model, chronological_age=p.age, sex=p.sex, methods=pipeline.DEFAULT_METHODS)
        except BavisError as err:
            print(f"| {p.subject} | {p.age:.0f} | REFUSED: {err} |")
            rows.append(None)
            continue
        seconds = time.perf_counter() - t0
        qc = a.record["preprocessing_qc"]
        pred = a.prediction
        rows.append((qc, seconds, a.notes))
        ages.append(p.age)
        gm.append(qc.get("gm_fraction", float("nan")))
        unc = f" ± {pred.uncertainty:.1f}" if pred.uncertainty is not None else ""
        print(f"| {p.subject} | {p.age:.0f} | {pred.brain_age:.1f}{unc} | {qc['registration_correlation']:.2f} | "
              f"{qc['registration_correlation_smoothed']:.2f} | {qc['affine_scale_determinant']:.2f} | "
              f"{gm[-1]:.3f} | {seconds:.1f} | {' / '.join(a.notes) or '-'} |", flush=True)
    done = [r for r in rows if r is not None]
    print(f"\nrefused {sum(r is None for r in rows)} of {len(rows)}; "
          f"with a registration warning {sum(any('Registration' in n for n in r[2]) for r in done)}; "
          f"with any warning {sum(bool(r[2]) for r in done)}")
    print("\n| QC figure | min | median | max |\n|---|--:|--:|--:|")
    for key in ("registration_correlation", "registration_correlation_smoothed", "affine_scale_determinant", "gm_fraction"):
        v = np.array([r[0][key] for r in done])
        print(f"| {key} | {v.min():.3f} | {np.median(v):.3f} | {v.max():.3f} |")
    t = np.array([r[1] for r in done])
    print(f"| seconds per scan (pipeline.analyze, in process) | {t.min():.1f} | {np.median(t):.1f} | {t.max():.1f} |")
    if len(ages) > 2:
        print(f"\nGM fraction of intracranial volume vs age: r = {np.corrcoef(gm, ages)[0, 1]:+.3f} (n {len(ages)})")


def robustness(args) -> None:
    people = read_participants(args.bids)[: args.robust]
    print(f"\n## Robustness (brain age difference from the original scan, model {args.model})\n")
    print("| scan | variant | brain age | difference |\n|---|---|--:|--:|")
    worst = {"pose/storage/voxel": 0.0, "skull": 0.0}
    for p in people:
        base = None
        for name, img in variants(nib.load(p.t1)):
            try:
                age = pipeline.analyze(img, model=args.model, methods=()).prediction.brain_age
            except BavisError as err:
                print(f"| {p.subject} | {name} | REFUSED: {err} | |")
                continue
            base = age if base is None else base
            diff = age - base
            key = "skull" if "skull" in name else "pose/storage/voxel"
            if name != "original":
                worst[key] = max(worst[key], abs(diff))
            print(f"| {p.subject} | {name} | {age:.2f} | {diff:+.2f} |", flush=True)
    print(f"\nworst |difference|: rotation ±15°, storage order, 1.2 mm: {worst['pose/storage/voxel']:.2f} y; "
          f"with vs without skull: {worst['skull']:.2f} y")


def skull_leakage(args) -> None:
    """Tissue maps of the same brain with a synthetic skull: how much GM/WM/CSF lands outside it."""
    from scipy import ndimage

    from napari_bavis.io import scan_from_image
    from napari_bavis.preprocess.geometry import resample

    _, card = pipeline.load_model(args.model)
    print("\n## Tissue maps of a head with a synthetic skull: mass outside the true brain (+3 mm)\n")
    print("| scan | brain mask | Dice vs true brain | GM outside | WM outside | CSF outside |\n|---|---|--:|--:|--:|--:|")
    for p in read_participants(args.bids)[: args.robust]:
        img = nib.load(p.t1)
        head = with_skull(img)
        pad = (np.array(head.shape) - np.array(img.shape)) // 2
        true = np.zeros(head.shape, bool)
        true[tuple(slice(a, a + n) for a, n in zip(pad, img.shape))] = ndimage.binary_fill_holes(np.asarray(img.dataobj) > 0)
        pre = pipeline.preprocess_scan(scan_from_image(head), card)
        g = pre.grid
        on_grid = resample(true.astype(np.float32), head.affine, g.shape, g.affine, out_to_in_ras=pre.template_to_scan) >= 0.5
        outside = ~ndimage.binary_dilation(on_grid, iterations=1)
        mask = np.asarray(pre.brain_mask.dataobj) > 0
        dice = 2 * (mask & true).sum() / (mask.sum() + true.sum())
        shares = [pre.tissues[t][outside].sum() / pre.tissues[t].sum() for t in ("gm", "wm", "csf")]
        print(f"| {p.subject} | {pre.qc['brain_extraction_backend']} | {dice:.3f} | " + " | ".join(f"{v:.4f}" for v in shares) + " |", flush=True)


def cross_validation(args) -> None:
    from napari_bavis.training.real_brain_age import cross_validate, format_table, input_card, summarise
    from napari_bavis.training.real_data import preprocessed_participants

    records = [r for r in preprocessed_participants(read_participants(args.bids), input_card(), workers=2) if r.error is None]
    cv = cross_validate(records)
    print(f"\n## 5-fold cross-validation by subject (n {len(records)}; same folds for all three)\n")
    print(format_table(summarise(cv, records)))
    print(f"\nmean ensemble spread (the reported uncertainty): {np.mean(cv['uncertainty']):.2f} y")


def cli_time(args) -> None:
    people = read_participants(args.bids)[: args.cli]
    print(f"\n## `napari-bavis analyze SCAN` wall time, process start and export included (load {os.getloadavg()[0]:.1f})\n")
    times = []
    for p in people:
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "napari_bavis.cli", "analyze", str(p.t1), "--out", out,
                            "--model", args.model, "--age", str(p.age), "--quiet"], check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        print(f"- {p.subject}: {times[-1]:.1f} s", flush=True)
    print(f"\nmedian {np.median(times):.1f} s per real scan; this machine's single-core speed now: "
          f"{_spin_seconds():.2f} s for a 20 M-step Python loop (compare it across runs: a shared VM's speed drifts)")


def _spin_seconds() -> float:
    """A load-free yardstick printed beside the times, so runs at different moments can be compared."""
    start, x = time.perf_counter(), 0
    for i in range(20_000_000):
        x += i
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bids", type=Path, default=DEFAULT_BIDS)
    parser.add_argument("--model", default=pipeline.DEFAULT_MODEL)
    parser.add_argument("--limit", type=int, default=0, help="only the first N scans (0: all)")
    parser.add_argument("--robust", type=int, default=3, help="scans for the robustness table (0: skip)")
    parser.add_argument("--cli", type=int, default=3, help="scans timed through the CLI (0: skip)")
    parser.add_argument("--no-cv", action="store_true", help="skip the cross-validation table")
    parser.add_argument("--no-scans", action="store_true", help="skip the per-scan table")
    args = parser.parse_args()
    if not (args.bids / "participants.tsv").is_file():
        sys.exit(f"bench_real: no BIDS dataset at {args.bids} (this benchmark needs the real scans)")
    if not args.no_scans:
        run(args)
    if args.robust:
        robustness(args)
        skull_leakage(args)
    if not args.no_cv:
        cross_validation(args)
    if args.cli:
        cli_time(args)


if __name__ == "__main__":
    main()
