"""Which inputs carry age signal on the real scans? CV MAE of ridge / GP fits on feature variants.

    python benchmarks/bench_real_features.py [--bids ../shared/data/ds002748]

Reads the scans through the same cached preprocessing as the trainer (training.real_data), then
5-fold CV (3 fold seeds) per feature set. docs/training.md has the table this printed; nothing
here is shipped: it records what was tried before the next attempt at a smaller error.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, DotProduct, WhiteKernel
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold

from napari_bavis.preprocess.resample import smooth
from napari_bavis.preprocess.templates import template_on_grid
from napari_bavis.training.real_brain_age import ALPHAS, COARSE_GRID, input_card
from napari_bavis.training.real_data import preprocessed_participants, read_participants


def pooled(volumes: np.ndarray, pool: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(volumes, np.float32))[:, None]
    return torch.nn.functional.avg_pool3d(t, pool, ceil_mode=True).flatten(1).numpy().astype(np.float64)


def cv_mae(x: np.ndarray, ages: np.ndarray, make, standardise: bool, seeds=(0, 1, 2)) -> float:
    maes = []
    for seed in seeds:
        pred = np.zeros(len(ages))
        for train, test in KFold(5, shuffle=True, random_state=seed).split(x):
            xt, xe = x[train], x[test]
            if standardise:
                mu, sd = xt.mean(0), xt.std(0) + 1e-6
                xt, xe = (xt - mu) / sd, (xe - mu) / sd
            centre = ages[train].mean()
            pred[test] = make().fit(xt, ages[train] - centre).predict(xe) + centre
        maes.append(np.abs(pred - ages).mean())
    return float(np.mean(maes))


def log_jacobians(inputs: np.ndarray, template: np.ndarray, mask: np.ndarray, sigma_voxels: float) -> np.ndarray:
    """Deformation-based morphometry: log-det Jacobian of a demons registration (SimpleITK fast
    symmetric forces, 60 iterations) of the template onto each affinely registered, z-scored input on
    the 3 mm grid; > 0 where the scan is larger than the template (e.g. wide ventricles)."""
    import SimpleITK as sitk

    def z(v):
        v = np.asarray(v, np.float32)
        inside = v[mask]
        return np.where(mask, (v - inside.mean()) / (inside.std() + 1e-6), 0).astype(np.float32)

    fixed = sitk.GetImageFromArray(z(template).transpose(2, 1, 0).copy())
    out = []
    for volume in inputs:
        demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
        demons.SetNumberOfIterations(60)
        demons.SetStandardDeviations(sigma_voxels)
        field = demons.Execute(fixed, sitk.GetImageFromArray(z(volume).transpose(2, 1, 0).copy()))
        jac = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(field)).transpose(2, 1, 0)
        out.append(np.log(np.clip(jac, 0.05, 20.0)) * mask)
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bids", default="../shared/data/ds002748")
    args = ap.parse_args()
    records = [r for r in preprocessed_participants(read_participants(args.bids), input_card(COARSE_GRID))
               if r.error is None]
    ages = np.array([r.participant.age for r in records])
    mask = np.asarray(template_on_grid("mask", COARSE_GRID)) >= 0.5
    t1 = np.stack([r.model_input for r in records])
    tissue = {k: np.stack([r.tissues[k] for r in records]) * mask for k in ("gm", "wm", "csf")}
    ridge = lambda: RidgeCV(alphas=ALPHAS)  # noqa: E731
    sets = {f"T1 z, {3 * p} mm blocks": pooled(t1, p) for p in (2, 3, 4, 6)}
    for name, vol in tissue.items():
        for fwhm in (0, 8):
            v = np.stack([smooth(g, COARSE_GRID, fwhm) for g in vol]) if fwhm else vol
            for p in (2, 4):
                sets[f"{name.upper()} fwhm {fwhm}, {3 * p} mm blocks"] = pooled(v, p)
    sets["T1 + CSF, 12 mm"] = np.hstack([pooled(t1, 4), pooled(tissue["csf"], 4)])
    sets["GM + WM + CSF, 12 mm"] = np.hstack([pooled(tissue[k], 4) for k in ("gm", "wm", "csf")])
    template = np.asarray(template_on_grid("t1", COARSE_GRID), np.float32)
    for sigma in (1.0, 2.0):  # demons field smoothing, voxels of 3 mm
        jac = log_jacobians(t1, template, mask, sigma)
        for p in (2, 3, 4):
            sets[f"log-Jacobian (demons s{sigma:g}), {3 * p} mm"] = pooled(jac, p)
        sets[f"log-Jacobian (s{sigma:g}) + T1, 12 mm"] = np.hstack([pooled(jac, 4), pooled(t1, 4)])
    print(f"{len(ages)} scans; the folds' mean age: MAE {np.abs(ages - ages.mean()).mean():.2f} y")
    print(f"{'features':34s} {'n':>6s}  ridge  ridge(std)")
    for name, x in sets.items():
        print(f"{name:34s} {x.shape[1]:6d}  {cv_mae(x, ages, ridge, False):5.2f}  {cv_mae(x, ages, ridge, True):5.2f}", flush=True)
    warnings.simplefilter("ignore")
    kernels = {"GP linear": lambda: GaussianProcessRegressor(ConstantKernel() * DotProduct(1.0) + WhiteKernel(), normalize_y=True),
               "GP RBF": lambda: GaussianProcessRegressor(ConstantKernel() * RBF(100.0) + WhiteKernel(), normalize_y=True)}
    for name in ("T1 z, 12 mm blocks", "CSF fwhm 0, 12 mm blocks"):
        for kname, make in kernels.items():
            print(f"{kname} on {name}: {cv_mae(sets[name], ages, make, True):.2f}", flush=True)


if __name__ == "__main__":
    main()
