"""Does a 1.5 mm segmentation carry more age signal than the 3 mm one? CV MAE of ridge / GP fits.

    OMP_NUM_THREADS=1 python benchmarks/bench_real_fine.py [--bids ../shared/data/ds002748]
        [--coarse-timings N] [--nested]

The pipeline's own preprocessing (N4, affine registration, EM segmentation) of the 60 real scans is
run on a 1.5 mm MNI grid over the same box as COARSE_GRID (``input_card(FINE_GRID)``, cached per
scan like the trainer's 3 mm inputs; about 30 s per scan per worker the first time), then the same
5-fold CV over 3 fold seeds as ``bench_real_features`` (whose helpers this imports) on tissue maps,
T1 and combinations. ``--coarse-timings N`` also preprocesses the first N scans at 3 mm (cached in
the same folder) and compares the per-step times; ``--nested`` adds a nested choice of the variant
(chosen inside each outer training fold by an inner 5-fold CV) so the best figure is not optimistic.
docs/training.md ("What else was tried") has what this printed; nothing here is shipped.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, DotProduct, WhiteKernel
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_real_features import cv_mae, pooled  # noqa: E402

from napari_bavis.grid import Grid  # noqa: E402
from napari_bavis.preprocess.resample import smooth  # noqa: E402
from napari_bavis.preprocess.templates import template_on_grid  # noqa: E402
from napari_bavis.training.real_brain_age import ALPHAS, COARSE_GRID, input_card  # noqa: E402
from napari_bavis.training.real_data import preprocessed_participants, read_participants  # noqa: E402

#: COARSE_GRID's MNI box at 1.5 mm (121x145x121).
FINE_GRID = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 1.5)
TISSUES = ("gm", "wm", "csf")


def ridge():
    return RidgeCV(alphas=ALPHAS)


def fit_predict(x_train, y_train, x_test, standardise: bool) -> np.ndarray:
    if standardise:
        mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
        x_train, x_test = (x_train - mu) / sd, (x_test - mu) / sd
    centre = y_train.mean()
    return ridge().fit(x_train, y_train - centre).predict(x_test) + centre


def nested_mae(variants: dict, ages: np.ndarray, seeds=(0, 1, 2)) -> tuple[float, dict]:
    """Outer 5-fold CV; inside each outer training fold, every (features, standardised) variant is
    scored by an inner 5-fold CV and the best one is fitted on the whole training fold."""
    maes, picks = [], {}
    n = len(ages)
    for seed in seeds:
        pred = np.zeros(n)
        for train, test in KFold(5, shuffle=True, random_state=seed).split(np.zeros(n)):
            best, best_mae = None, np.inf
            for key, x in variants.items():
                xs, ys = x[train], ages[train]
                inner = np.zeros(len(train))
                for itr, ite in KFold(5, shuffle=True, random_state=100 + seed).split(xs):
                    inner[ite] = fit_predict(xs[itr], ys[itr], xs[ite], key[1])
                m = np.abs(inner - ys).mean()
                if m < best_mae:
                    best, best_mae = key, m
            picks[best] = picks.get(best, 0) + 1
            pred[test] = fit_predict(variants[best][train], ages[train], variants[best][test], best[1])
        maes.append(np.abs(pred - ages).mean())
    return float(np.mean(maes)), picks


def timing_table(records, label: str) -> dict:
    steps = [k for k in records[0].timings if k != "total"] + ["total"]
    med = {k: float(np.median([r.timings.get(k, np.nan) for r in records])) for k in steps}
    print(f"{label}: median s per scan over {len(records)} scans: "
          + ", ".join(f"{k} {v:.1f}" for k, v in med.items()), flush=True)
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bids", default="../shared/data/ds002748")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--coarse-timings", type=int, default=0, metavar="N")
    ap.add_argument("--nested", action="store_true")
    args = ap.parse_args()
    participants = read_participants(args.bids)
    t0 = time.perf_counter()
    all_records = preprocessed_participants(participants, input_card(FINE_GRID), workers=args.workers, progress=True)
    records = [r for r in all_records if r.error is None]
    print(f"1.5 mm preprocessing (or cache): {time.perf_counter() - t0:.0f} s; {len(records)} of "
          f"{len(all_records)} scans usable; grid {FINE_GRID.shape}", flush=True)
    fine_times = timing_table(records, "1.5 mm (as cached)")
    if args.coarse_timings:
        subset = participants[:args.coarse_timings]
        coarse = [r for r in preprocessed_participants(subset, input_card(COARSE_GRID), workers=args.workers)
                  if r.error is None]
        timing_table(coarse, "3 mm (as cached)")
        names = {r.participant.subject for r in coarse}
        timing_table([r for r in records if r.participant.subject in names], "1.5 mm, the same scans")
    del fine_times

    t0 = time.perf_counter()
    ages = np.array([r.participant.age for r in records])
    mask = np.asarray(template_on_grid("mask", FINE_GRID)) >= 0.5
    voxel_ml = 1.5 ** 3 / 1000
    # per-scan volumes are loaded once, pooled, and dropped to keep memory small
    sets: dict[str, np.ndarray] = {}
    pools = {4: "6 mm", 8: "12 mm"}
    fractions = {k: np.zeros(len(records)) for k in TISSUES}
    blocks = {}  # (tissue, fwhm, pool) -> (N, V)
    t1_blocks = {p: [] for p in (4, 6, 8)}
    for i, r in enumerate(records):
        maps = {k: np.where(mask, r.tissues[k], 0).astype(np.float32) for k in TISSUES}
        icv = sum(maps[k].sum() for k in TISSUES)
        for k in TISSUES:
            fractions[k][i] = maps[k].sum() / icv
            for fwhm in (0, 4, 8):
                v = smooth(maps[k], FINE_GRID, fwhm) if fwhm else maps[k]
                for p in pools:
                    blocks.setdefault((k, fwhm, p), []).append(pooled(v[None], p)[0])
        for p in t1_blocks:
            t1_blocks[p].append(pooled(np.asarray(r.model_input, np.float32)[None], p)[0])
        if i == 0:
            print(f"ICV of the first scan: {icv * voxel_ml:.0f} ml", flush=True)
    records = None
    print(f"features built in {time.perf_counter() - t0:.0f} s", flush=True)
    print("Pearson r with age of the fraction of intracranial volume (3 mm: GM -0.33, WM +0.25, CSF +0.11): "
          + ", ".join(f"{k.upper()} {np.corrcoef(fractions[k], ages)[0, 1]:+.2f}" for k in TISSUES), flush=True)
    t1 = {p: np.stack(v) for p, v in t1_blocks.items()}
    for p, label in ((4, "6 mm"), (6, "9 mm"), (8, "12 mm")):
        sets[f"T1 z, {label} blocks"] = t1[p]
    for (k, fwhm, p), v in blocks.items():
        sets[f"{k.upper()} fwhm {fwhm}, {pools[p]} blocks"] = np.stack(v)
    sets["GM/WM/CSF fractions of ICV"] = np.stack([fractions[k] for k in TISSUES], 1)
    for fwhm in (0, 8):
        for p in pools:
            sets[f"T1 + CSF fwhm {fwhm}, {pools[p]}"] = np.hstack([t1[p], sets[f"CSF fwhm {fwhm}, {pools[p]} blocks"]])
    sets["GM + WM + CSF fwhm 8, 12 mm"] = np.hstack([sets[f"{k.upper()} fwhm 8, 12 mm blocks"] for k in TISSUES])

    t0 = time.perf_counter()
    print(f"{len(ages)} scans; the folds' mean age: MAE {np.abs(ages - ages.mean()).mean():.2f} y")
    print(f"{'features (1.5 mm segmentation)':36s} {'n':>6s}  ridge  ridge(std)")
    scores = {}
    for name, x in sets.items():
        a, b = cv_mae(x, ages, ridge, False), cv_mae(x, ages, ridge, True)
        scores[(name, False)], scores[(name, True)] = a, b
        print(f"{name:36s} {x.shape[1]:6d}  {a:5.2f}  {b:5.2f}", flush=True)
    print(f"ridge fits: {time.perf_counter() - t0:.0f} s", flush=True)

    warnings.simplefilter("ignore")
    best_sets = []
    for (name, _), _score in sorted(scores.items(), key=lambda kv: kv[1]):
        if name not in best_sets:
            best_sets.append(name)
        if len(best_sets) == 3:
            break
    gp = lambda: GaussianProcessRegressor(ConstantKernel() * DotProduct(1.0) + WhiteKernel(), normalize_y=True)  # noqa: E731
    for name in best_sets:
        print(f"GP linear on {name} (standardised): {cv_mae(sets[name], ages, gp, True):.2f}", flush=True)
    best_key = min(scores, key=scores.get)
    print(f"best of {len(scores)} ridge variants (chosen on the same 60 scans, optimistic): "
          f"{best_key[0]}{' (std)' if best_key[1] else ''} {scores[best_key]:.2f}", flush=True)
    if args.nested or scores[best_key] <= 5.8:
        t0 = time.perf_counter()
        mae, picks = nested_mae({key: sets[key[0]] for key in scores}, ages)
        print(f"nested choice among all {len(scores)} ridge variants: MAE {mae:.2f} "
              f"({time.perf_counter() - t0:.0f} s); picked: "
              + "; ".join(f"{n}{' (std)' if s else ''} x{c}" for (n, s), c in picks.items()), flush=True)


if __name__ == "__main__":
    main()
