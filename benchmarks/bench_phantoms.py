"""Seconds per phantom subject on the 1.5 mm and 3 mm grids (one core), and an optional learnability check.

    OMP_NUM_THREADS=1 python benchmarks/bench_phantoms.py              # timing table
    OMP_NUM_THREADS=1 python benchmarks/bench_phantoms.py --learnability 200

The learnability check trains a ridge regression on 6 mm GM maps of CDR-0 phantoms (3 mm grid)
and prints the test MAE and the mean brain-age gap by CDR: it tells whether the aging and
disease effects are strong enough for a model to pick up, and whether the gap rises with CDR.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from napari_bavis.grid import MNI_1P5, Grid
from napari_bavis.phantoms import make_subject, plan_cohort

GRID_3MM = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 3.0)


def timing(repeats: int) -> None:
    print(f"{'grid':<22}{'first call (s)':>16}{'s / subject':>14}{'native s / subject':>20}")
    for name, grid in (("MNI 1.5 mm 121x145x121", MNI_1P5), ("MNI 3 mm 61x73x61", GRID_3MM)):
        t0 = time.perf_counter()
        make_subject(0, 50.0, "F", 0.0, grid=grid)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(repeats):
            make_subject(i + 1, 30.0 + 5 * i, "M" if i % 2 else "F", (0.0, 0.5, 1.0, 2.0)[i % 4], grid=grid)
        per = (time.perf_counter() - t0) / repeats
        native = ""
        if grid is MNI_1P5:
            make_subject(99, 60.0, "F", 0.0, grid=grid, native=True)  # warm the 1 mm caches
            t0 = time.perf_counter()
            make_subject(100, 60.0, "F", 0.0, grid=grid, native=True)
            native = f"{time.perf_counter() - t0:.2f}"
        print(f"{name:<22}{first:>16.2f}{per:>14.2f}{native:>20}")


def _features(subject) -> np.ndarray:
    gm = subject.gm_model
    gm = gm[: gm.shape[0] // 2 * 2, : gm.shape[1] // 2 * 2, : gm.shape[2] // 2 * 2]
    return gm.reshape(gm.shape[0] // 2, 2, gm.shape[1] // 2, 2, gm.shape[2] // 2, 2).mean(axis=(1, 3, 5)).ravel()


def learnability(n: int) -> None:
    from sklearn.linear_model import RidgeCV

    n_train, n_test_per_cdr = int(n * 0.6), max(1, int(n * 0.1))
    train = plan_cohort(n_train, seed=1, cdr_weights={0.0: 1.0})
    test = [dict(s, cdr=c) for c in (0.0, 0.5, 1.0, 2.0) for s in plan_cohort(n_test_per_cdr, seed=int(2 + 2 * c), ages=(60, 90), cdr_weights={0.0: 1.0})]
    t0 = time.perf_counter()
    x_train = np.stack([_features(make_subject(grid=GRID_3MM, **s)) for s in train])
    x_test = np.stack([_features(make_subject(grid=GRID_3MM, **s)) for s in test])
    generated = time.perf_counter() - t0
    sex = lambda plan: np.array([[1.0 if s["sex"] == "M" else 0.0] for s in plan])  # noqa: E731
    x_train, x_test = np.hstack([x_train, sex(train)]), np.hstack([x_test, sex(test)])
    y_train = np.array([s["age"] for s in train])
    y_test = np.array([s["age"] for s in test])
    cdr = np.array([s["cdr"] for s in test])
    model = RidgeCV(alphas=np.logspace(-4, 4, 17)).fit(x_train, y_train)
    gap = model.predict(x_test) - y_test
    print(f"\nridge on 6 mm GM maps: {n_train} CDR-0 training phantoms (ages 20-90), "
          f"{len(test)} test phantoms (ages 60-90), {generated:.0f} s to generate, alpha {model.alpha_:g}")
    print(f"{'CDR':<6}{'n':>4}{'MAE (y)':>10}{'mean gap (y)':>14}")
    for c in (0.0, 0.5, 1.0, 2.0):
        sel = cdr == c
        print(f"{c:<6}{sel.sum():>4}{np.abs(gap[sel]).mean():>10.2f}{gap[sel].mean():>14.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--learnability", type=int, default=0, metavar="N", help="also run the ridge check on N phantoms")
    args = parser.parse_args()
    timing(args.repeats)
    if args.learnability:
        learnability(args.learnability)
