"""Step 5: GM/WM/CSF probabilities from an EM Gaussian mixture with registered template priors.

Model (as in SPM's unified segmentation, without its bias and deformation terms):
p(class k | voxel i) is proportional to w_k * prior_ik * N(x_i; mu_k, sigma_k^2). The priors
are nilearn's MNI152 GM and WM maps and CSF = brain mask - GM - WM, mixed with a small
uniform floor so that intensity can overrule a misplaced prior. Chosen over antspyx
Atropos (about 30 s here, an extra dependency) because it runs in about a second in numpy.
"""

from __future__ import annotations

import numpy as np

CLASSES = ("gm", "wm", "csf")
PRIOR_FLOOR = 0.05
MAX_ITERATIONS = 40
TOLERANCE = 1e-5


def tissue_priors(gm: np.ndarray, wm: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(3, ...) GM, WM, CSF priors; CSF is what the brain mask holds beyond GM and WM."""
    gm = np.clip(gm, 0, 1)
    wm = np.clip(wm, 0, 1)
    csf = np.clip(np.clip(mask, 0, 1) - gm - wm, 0, 1)
    return np.stack([gm, wm, csf]).astype(np.float32)


def em_segment(intensity: np.ndarray, priors: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, dict]:
    """((3, ...) posterior probabilities, zero outside ``mask``; record of the fit)."""
    mask = np.asarray(mask, bool)
    x = intensity[mask].astype(np.float64)
    scale = float(np.median(x)) or 1.0
    x = x / scale
    p = priors[:, mask].astype(np.float64)
    p = p / np.maximum(p.sum(axis=0, keepdims=True), 1e-12)
    p = np.where(p.sum(axis=0, keepdims=True) > 0, p, 1.0 / 3.0)
    p = (1.0 - PRIOR_FLOOR) * p + PRIOR_FLOOR / 3.0

    weight_sum = p.sum(axis=1)
    mu = (p @ x) / weight_sum
    var = np.array([(p[k] * (x - mu[k]) ** 2).sum() / weight_sum[k] for k in range(3)])
    w = np.ones(3)
    previous = -np.inf
    iterations = 0
    for iterations in range(1, MAX_ITERATIONS + 1):
        var = np.maximum(var, 1e-6)
        lik = np.exp(-0.5 * (x[None] - mu[:, None]) ** 2 / var[:, None]) / np.sqrt(2 * np.pi * var[:, None])
        joint = w[:, None] * p * lik
        total = np.maximum(joint.sum(axis=0), 1e-300)
        post = joint / total
        log_lik = float(np.log(total).sum())
        nk = post.sum(axis=1)
        mu = (post @ x) / nk
        var = np.array([(post[k] * (x - mu[k]) ** 2).sum() / nk[k] for k in range(3)])
        # Mixing weights with spatial priors (Ashburner & Friston 2005, eq. 27 fixed point).
        w = nk / (p / np.maximum((w[:, None] * p).sum(axis=0), 1e-12)).sum(axis=1)
        if abs(log_lik - previous) < TOLERANCE * abs(log_lik):
            break
        previous = log_lik

    out = np.zeros((3,) + intensity.shape, np.float32)
    out[:, mask] = post
    record = {
        "method": "EM Gaussian mixture with template priors (numpy)",
        "classes": list(CLASSES),
        "priors": "nilearn MNI152 2009 GM, WM maps; CSF = brain mask - GM - WM",
        "prior_floor": PRIOR_FLOOR,
        "iterations": iterations,
        "means_relative_to_median": mu.tolist(),
        "sd_relative_to_median": np.sqrt(var).tolist(),
        "mixing_weights": w.tolist(),
    }
    return out, record
