"""Known-affine moved templates for preprocessing tests (a module, not conftest: names must be unique)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel.orientations import axcodes2ornt, ornt_transform
from scipy import ndimage

from napari_bavis.preprocess.templates import template


def pose_matrix(rotation_deg=(0, 0, 0), translation_mm=(0, 0, 0), scale=(1, 1, 1), center_mm=(0, -18, 18)):
    """4x4 RAS map template mm -> scan mm: scale and rotate about ``center_mm``, then shift."""
    rx, ry, rz = np.radians(rotation_deg)
    rot_x = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    rot_y = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
    rot_z = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    linear = rot_z @ rot_y @ rot_x @ np.diag(scale)
    c = np.asarray(center_mm, float)
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = c - linear @ c + np.asarray(translation_mm, float)
    return out


def moved_template(
    template_to_scan: np.ndarray,
    voxel_size=(1.2, 1.2, 1.2),
    storage: str = "LPS",
    kind: str = "t1",
    bias_strength: float = 0.0,
    noise_sd: float = 0.0,
    seed: int = 0,
    source_resolution: int = 1,
    padding_mm: float = 10.0,
) -> nib.Nifti1Image:
    """The template seen by a scanner: moved by ``template_to_scan``, stored on a ``storage``-ordered grid."""
    src, src_affine = template(kind, source_resolution)
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in src.shape], indexing="ij")).reshape(3, -1)
    world = (template_to_scan @ src_affine)[:3] @ np.vstack([corners, np.ones(corners.shape[1])])
    lo, hi = world.min(axis=1) - padding_mm, world.max(axis=1) + padding_mm
    ras_affine = np.diag([*voxel_size, 1.0])
    ras_affine[:3, 3] = lo
    shape = tuple(int(np.ceil((hi[i] - lo[i]) / voxel_size[i])) + 1 for i in range(3))
    # scan voxel -> scan mm -> template mm -> template voxel
    vox_map = np.linalg.inv(src_affine) @ np.linalg.inv(template_to_scan) @ ras_affine
    data = ndimage.affine_transform(src, vox_map[:3, :3], vox_map[:3, 3], output_shape=shape, order=1)
    rng = np.random.default_rng(seed)
    if bias_strength:
        axes = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij", sparse=True)
        c = rng.normal(size=4)
        data = data * np.exp(bias_strength * (c[0] * axes[0] + c[1] * axes[1] + c[2] * axes[2] + c[3] * axes[0] * axes[2]) / np.abs(c).sum())
    if noise_sd:
        data = np.abs(data + rng.normal(0, noise_sd * float(src.max()), shape))
    ras = nib.Nifti1Image(data.astype(np.float32), ras_affine)
    stored = ras.as_reoriented(ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(tuple(storage))))
    return nib.Nifti1Image(np.asarray(stored.dataobj, dtype=np.float32), stored.affine)

def landmark_error_mm(true: np.ndarray, estimated: np.ndarray, points_mm: np.ndarray) -> float:
    p = np.c_[points_mm, np.ones(len(points_mm))].T
    return float(np.linalg.norm((true @ p - estimated @ p)[:3], axis=0).mean())


#: A pose inside the issue's range (rotations <= 20 deg, shifts <= 30 mm, scaling within 10 %).
KNOWN_POSE = pose_matrix(rotation_deg=(14, -9, 7), translation_mm=(18, -22, 9), scale=(1.06, 0.96, 1.02))
