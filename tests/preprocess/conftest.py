"""Fixtures for preprocessing tests; the scan generators live in moved_scans.py."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_bavis.preprocess.templates import template

from moved_scans import KNOWN_POSE, moved_template


@pytest.fixture(scope="session")
def brain_landmarks_mm() -> np.ndarray:
    """200 template points (mm) spread inside the brain mask."""
    mask, affine = template("mask", 2)
    idx = np.argwhere(mask > 0.5)
    pick = np.random.default_rng(7).choice(len(idx), 200, replace=False)
    return (affine[:3, :3] @ idx[pick].T + affine[:3, 3:4]).T



@pytest.fixture(scope="session")
def native_scan() -> tuple[nib.Nifti1Image, np.ndarray]:
    """(scan at 2 mm, LAS storage, with bias field and noise; its true template->scan affine)."""
    img = moved_template(
        KNOWN_POSE, voxel_size=(2.0, 2.0, 2.0), storage="LAS", bias_strength=0.3, noise_sd=0.01, source_resolution=2
    )
    return img, KNOWN_POSE


@pytest.fixture(scope="session")
def native_result(native_scan):
    """Full default T1 preprocessing of ``native_scan`` (shared: it costs a few seconds)."""
    from napari_bavis.preprocess import PreprocessSpec, preprocess

    calls = []
    spec = PreprocessSpec(input_kind="t1", smoothing_fwhm_mm=0.0, intensity_normalisation="zscore", modulation=False)
    result = preprocess(native_scan[0], spec, progress=lambda step, i, n: calls.append((step, i, n)))
    return result, calls
