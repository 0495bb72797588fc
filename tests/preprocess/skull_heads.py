"""Heads with a skull for brain-extraction tests, built from the MNI template (a module, not conftest).

nilearn's template is skull-stripped; around its brain mask we lay what a T1 shows on a real
head: a thin dark CSF layer, a dark skull and a bright scalp (fat), then blur and Rician noise.
The template's own brain mask is then the reference a brain extraction should find.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from napari_bavis.preprocess.templates import template

#: (outer edge in mm outside the brain mask, T1 intensity in template units: WM is about 0.84)
HEAD_LAYERS = ((3.0, 0.12), (9.0, 0.04), (15.0, 0.95))


def head_with_skull(voxel_mm: float = 2.0, noise_sd: float = 0.02, seed: int = 0, pad: int = 14):
    """(head image, reference brain mask on the same grid): the 2 mm template in a skull.

    ``voxel_mm`` relabels the 2 mm voxels (e.g. 1.5 gives a smaller head, layers thinner in
    proportion): the brain-extraction code sees a head of another size, the anatomy is the same.
    """
    t1, affine = template("t1", 2)
    brain_mask, _ = template("mask", 2)
    t1 = np.pad(np.asarray(t1, np.float32), pad)
    brain = np.pad(np.asarray(brain_mask) >= 0.5, pad)
    outside_mm = ndimage.distance_transform_edt(~brain, sampling=2.0)
    head = np.where(brain, t1, 0.0).astype(np.float32)
    inner = 0.0
    for outer, value in HEAD_LAYERS:
        head[(outside_mm > inner) & (outside_mm <= outer)] = value
        inner = outer
    head = ndimage.gaussian_filter(head, 0.5)
    rng = np.random.default_rng(seed)
    sd = noise_sd * float(np.percentile(head, 99))
    head = np.sqrt((head + rng.normal(0, sd, head.shape)) ** 2 + rng.normal(0, sd, head.shape) ** 2).astype(np.float32)
    scaled = np.diag([voxel_mm / 2.0] * 3 + [1.0]) @ affine
    scaled[:3, 3] -= scaled[:3, :3] @ np.full(3, pad)
    return nib.Nifti1Image(head, scaled), brain.astype(np.uint8)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return float(2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))
