"""Sample scans built locally from the MNI152 2009 templates inside nilearn's wheel (no download).

``synthetic_native_scan`` puts the template brain where a scanner would: a rigid head
pose, LPS storage order, anisotropic voxels, a smooth bias field and Rician-like noise,
so that preprocessing has real work to do.
"""

from __future__ import annotations

from functools import lru_cache

import nibabel as nib
import numpy as np
from nibabel.orientations import axcodes2ornt, ornt_transform

#: Pose of the "synthetic scan (native space)" sample: chosen to need real registration.
SYNTHETIC_POSE = {
    "rotation_deg": (12.0, -8.0, 6.0),
    "translation_mm": (8.0, -14.0, 22.0),
    "voxel_size": (1.2, 1.2, 1.4),
    "storage": "LPS",
    "bias_strength": 0.25,
    "noise_sd": 0.02,
    "seed": 0,
}


@lru_cache(maxsize=2)
def mni_t1(resolution: int = 1) -> nib.Nifti1Image:
    """nilearn's MNI152 2009 T1 template (ships in its wheel)."""
    from .preprocess.templates import template

    data, affine = template("t1", resolution)
    return nib.Nifti1Image(np.array(data, dtype=np.float32), affine)


def rigid_matrix(rotation_deg=(0.0, 0.0, 0.0), translation_mm=(0.0, 0.0, 0.0), center_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 RAS-mm rotation about ``center_mm`` (x, then y, then z axis) followed by a shift."""
    rx, ry, rz = np.radians(rotation_deg)
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rot = rot_z @ rot_y @ rot_x
    center = np.asarray(center_mm, float)
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = center - rot @ center + np.asarray(translation_mm, float)
    return out


def to_scanner_space(
    image: nib.Nifti1Image,
    rotation_deg=(0.0, 0.0, 0.0),
    translation_mm=(0.0, 0.0, 0.0),
    voxel_size=(1.2, 1.2, 1.2),
    storage: str = "LPS",
    bias_strength: float = 0.0,
    noise_sd: float = 0.0,
    seed: int = 0,
    padding_mm: float = 8.0,
) -> nib.Nifti1Image:
    """Move a head into a scanner pose and store it on a new axis-aligned grid.

    The head is rotated about its centre of mass and shifted in world space; the new
    grid's axes follow ``storage`` (e.g. "LPS"), so the returned image's affine is the
    scanner's, and ``inv(returned pose) @ world`` recovers template coordinates.
    ``bias_strength`` scales a smooth multiplicative field; ``noise_sd`` is relative to
    the 99th intensity percentile.
    """
    from nibabel.processing import resample_from_to

    rng = np.random.default_rng(seed)
    src = np.asarray(image.dataobj, dtype=np.float32)
    src_affine = np.asarray(image.affine, float)
    weights = np.clip(src, 0, None)
    idx = np.array(np.nonzero(weights > np.percentile(weights, 50)))
    com_vox = idx.mean(axis=1)
    com = src_affine[:3, :3] @ com_vox + src_affine[:3, 3]
    pose = rigid_matrix(rotation_deg, translation_mm, com)
    moved_affine = pose @ src_affine

    # Field of view: the moved volume's occupied corners, padded, on the requested storage axes.
    occupied = np.array(np.nonzero(weights > 0.05 * weights.max()))
    lo_v, hi_v = occupied.min(axis=1), occupied.max(axis=1)
    corners = np.array(np.meshgrid(*[[lo_v[i], hi_v[i]] for i in range(3)], indexing="ij")).reshape(3, -1)
    world = moved_affine[:3, :3] @ corners + moved_affine[:3, 3:4]
    lo_w, hi_w = world.min(axis=1) - padding_mm, world.max(axis=1) + padding_mm

    ras_affine = np.eye(4)
    ras_affine[:3, :3] = np.diag(voxel_size)
    ras_affine[:3, 3] = lo_w
    ras_shape = tuple(int(np.ceil((hi_w[i] - lo_w[i]) / voxel_size[i])) + 1 for i in range(3))
    moved = nib.Nifti1Image(src, moved_affine)
    out = resample_from_to(moved, (ras_shape, ras_affine), order=1, mode="constant", cval=0.0)
    data = np.asarray(out.dataobj, dtype=np.float32)

    if bias_strength:
        data *= _bias_field(data.shape, bias_strength, rng)
    if noise_sd:
        sd = noise_sd * float(np.percentile(data[data > 0], 99)) if np.any(data > 0) else noise_sd
        real = data + rng.normal(0.0, sd, data.shape).astype(np.float32)
        imag = rng.normal(0.0, sd, data.shape).astype(np.float32)
        data = np.sqrt(real**2 + imag**2)

    ras_img = nib.Nifti1Image(data.astype(np.float32), ras_affine)
    to_storage = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(tuple(storage.upper())))
    stored = ras_img.as_reoriented(to_storage)
    result = nib.Nifti1Image(np.asarray(stored.dataobj, dtype=np.float32), stored.affine)
    result.header.set_xyzt_units("mm", "sec")
    result.set_qform(stored.affine, 1)
    result.set_sform(stored.affine, 1)
    return result


def _bias_field(shape, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field exp(low-order polynomial), mean about 1."""
    coords = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij", sparse=True)
    x, y, z = coords
    c = rng.normal(0.0, 1.0, 6).astype(np.float32)
    poly = c[0] * x + c[1] * y + c[2] * z + c[3] * x * y + c[4] * (z**2 - 0.33) + c[5] * y * z
    poly = poly / (np.abs(c).sum() + 1e-6)
    return np.exp(strength * poly).astype(np.float32)


def synthetic_native_scan() -> nib.Nifti1Image:
    """The foundation's sample: the 1 mm template in a scanner pose (deterministic)."""
    return to_scanner_space(mni_t1(1), **SYNTHETIC_POSE)


# --- the same scan seen another way (robustness checks on real scans: tests, benchmarks/bench_real.py) ---

def rotated(img: nib.Nifti1Image, degrees, axis: int) -> nib.Nifti1Image:
    """The same voxels with an affine rotated about the volume's centre: a new head pose, no resampling."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    rot = np.eye(4)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    centre = img.affine @ np.r_[(np.array(img.shape[:3]) - 1) / 2.0, 1.0]
    shift = np.eye(4)
    shift[:3, 3] = centre[:3]
    return nib.Nifti1Image(np.asarray(img.dataobj), shift @ rot @ np.linalg.inv(shift) @ img.affine)


def restored(img: nib.Nifti1Image, order=(2, 0, 1), flip: int = 1) -> nib.Nifti1Image:
    """The same voxels stored in another axis order, one axis reversed (affine adjusted exactly)."""
    ornt = np.array([[order[k], -1 if k == flip else 1] for k in range(3)])
    inverse = nib.orientations.ornt_transform(ornt, np.array([[0, 1], [1, 1], [2, 1]]))
    data = nib.orientations.apply_orientation(np.asarray(img.dataobj), inverse)
    affine = img.affine @ nib.orientations.inv_ornt_aff(inverse, img.shape[:3])
    return nib.Nifti1Image(data, affine)


def resampled(img: nib.Nifti1Image, voxel_mm: float) -> nib.Nifti1Image:
    from nibabel.processing import resample_to_output

    return resample_to_output(img, voxel_sizes=(voxel_mm,) * 3, order=1)


def with_skull(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """A synthetic skull (dark, 5 mm) and scalp (bright, 6 mm) around a skull-stripped brain."""
    from scipy import ndimage

    data = np.asarray(img.dataobj, np.float32)
    brain = data > 0
    pad = int(np.ceil(14 / min(img.header.get_zooms()[:3])))
    brain = np.pad(brain, pad)
    out = np.pad(data, pad)
    dist = ndimage.distance_transform_edt(~brain, sampling=img.header.get_zooms()[:3])
    ref = float(np.percentile(data[data > 0], 90))
    rng = np.random.default_rng(0)
    out[(dist > 1) & (dist <= 6)] = 0.08 * ref  # skull and CSF rim
    scalp = (dist > 6) & (dist <= 12)
    out[scalp] = ref * (0.9 + 0.1 * rng.random(int(scalp.sum())))
    affine = img.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.full(3, pad)
    return nib.Nifti1Image(out, affine)
