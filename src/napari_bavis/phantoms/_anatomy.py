"""Template anatomy for the phantoms: nilearn's MNI152 2009 maps and the regions the effects act on.

Regions are defined once on the reference grid (MNI_1P5) from the template maps plus MNI
coordinates (no atlas, no download) and then resampled onto whatever grid is asked for.
Everything here is cached: a phantom only pays for it on its first subject per grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

from ..preprocess.templates import template
from ..grid import MNI_1P5, Grid

#: Bits of the region label volume (several bits may be set in one voxel).
BRAIN, VENTRICLES, HIPPOCAMPUS, CORTEX, WHITE_MATTER = 1, 2, 4, 8, 16
REGION_BITS = {
    "brain": BRAIN,
    "ventricles": VENTRICLES,
    "hippocampus": HIPPOCAMPUS,
    "cortex": CORTEX,
    "white_matter": WHITE_MATTER,
}

#: Centres (RAS mm) of the two medial-temporal ellipsoids, their semi-axes (x, long axis, z)
#: and the pitch of the long axis (anterior end lower, as the hippocampal head is).
HIPPOCAMPUS_CENTRES_MM = ((-28.0, -22.0, -14.0), (28.0, -22.0, -14.0))
HIPPOCAMPUS_RADII_MM = (8.0, 18.0, 9.0)
HIPPOCAMPUS_PITCH_DEG = -30.0
#: Box (RAS mm) searched for the lateral ventricles, around (0, -10, 15).
VENTRICLE_BOX_MM = ((-25.0, 25.0), (-45.0, 30.0), (-5.0, 32.0))
#: Deep gray matter (striatum, thalamus) excluded from the cortex: ellipsoid centre and semi-axes.
DEEP_GM_CENTRE_MM, DEEP_GM_RADII_MM = (0.0, -6.0, 4.0), (28.0, 30.0, 18.0)
#: Periventricular white matter: WM within this distance of the lateral ventricles.
PERIVENTRICULAR_MM = 12.0

#: Mean template T1 of the tissues (template units, 0..1), used to turn tissue loss into T1 change.
T1_CSF, T1_GM, T1_WM = 0.30, 0.65, 0.84

#: Coarse world grid on which deformations are built (3 mm over the MNI box): smooth fields only.
COARSE = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 3.0)

def source_template(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(read-only float32 array, affine) of nilearn's 1 mm MNI152 2009 map ``kind`` (ships in its wheel)."""
    return template(kind, 1)


@lru_cache(maxsize=1)
def native_grid(margin_mm: float = 8.0) -> Grid:
    """The part of nilearn's 1 mm template grid around the brain: native-space phantoms are built on it."""
    mask, affine = source_template("mask")
    idx = np.array(np.nonzero(mask > 0.5))
    lo = np.maximum(idx.min(axis=1) - int(margin_mm), 0)
    hi = np.minimum(idx.max(axis=1) + int(margin_mm) + 1, mask.shape)
    cut = affine.copy()
    cut[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]
    return Grid(shape=tuple(int(v) for v in hi - lo), affine=cut)


def world_coords(grid: Grid) -> np.ndarray:
    """(3, *shape) float32 RAS mm of every voxel centre."""
    ijk = np.indices(grid.shape, dtype=np.float32).reshape(3, -1)
    xyz = grid.affine[:3, :3].astype(np.float32) @ ijk + grid.affine[:3, 3:4].astype(np.float32)
    return xyz.reshape((3,) + tuple(grid.shape))


def resample(data: np.ndarray, src_affine: np.ndarray, grid: Grid, order: int = 1, mode: str = "constant") -> np.ndarray:
    """``data`` (on ``src_affine``) sampled on ``grid``; smoothed first when the grid is coarser (no aliasing)."""
    matrix = np.linalg.inv(src_affine) @ grid.affine
    start = np.round(matrix[:3, 3]).astype(int)
    stop = start + np.asarray(grid.shape)
    if np.allclose(matrix[:3, :3], np.eye(3)) and np.allclose(matrix[:3, 3], start, atol=1e-4) and (
        np.all(start >= 0) and np.all(stop <= np.asarray(data.shape))
    ):  # the grid is a box cut out of the source grid
        return np.array(data[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]])
    src_vox = np.linalg.norm(src_affine[:3, :3], axis=0)
    sigma = np.sqrt(np.clip(np.square(grid.voxel_size) - np.square(src_vox), 0, None)) / 2.355 / src_vox
    if order > 0 and np.any(sigma > 0.3):
        data = ndi.gaussian_filter(np.asarray(data, np.float32), sigma)
    out_dtype = np.float32 if order > 0 else data.dtype
    return ndi.affine_transform(
        data, matrix[:3, :3], matrix[:3, 3], output_shape=tuple(grid.shape), order=order, mode=mode, output=out_dtype
    )


@lru_cache(maxsize=16)
def template_on(kind: str, grid: Grid) -> np.ndarray:
    """nilearn template ``kind`` on ``grid`` (read-only)."""
    out = resample(*source_template(kind), grid)
    out.setflags(write=False)
    return out


def _ellipsoid_distance(xyz: np.ndarray, centre, radii, pitch_deg: float = 0.0) -> np.ndarray:
    """Normalised ellipsoid radius (<= 1 inside); the long (y) axis is pitched about x."""
    p = np.radians(pitch_deg)
    dx, dy, dz = (xyz[i] - centre[i] for i in range(3))
    along = np.cos(p) * dy + np.sin(p) * dz
    across = -np.sin(p) * dy + np.cos(p) * dz
    return (dx / radii[0]) ** 2 + (along / radii[1]) ** 2 + (across / radii[2]) ** 2


def hippocampal_ellipsoids(xyz: np.ndarray) -> np.ndarray:
    """Normalised distance to the nearer medial-temporal ellipsoid."""
    return np.minimum(
        *(_ellipsoid_distance(xyz, c, HIPPOCAMPUS_RADII_MM, HIPPOCAMPUS_PITCH_DEG) for c in HIPPOCAMPUS_CENTRES_MM)
    )


@dataclass(frozen=True)
class Anatomy:
    """Template maps and effect weights on one grid (read-only arrays)."""

    grid: Grid
    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    cortex_weight: np.ndarray  # soft 0..~1.25, where cortical thinning acts
    hippocampus_weight: np.ndarray  # soft 0..1, where medial-temporal atrophy acts
    white_matter_weight: np.ndarray  # soft 0..1, periventricular WM rarefaction


@lru_cache(maxsize=1)
def reference_regions() -> dict[str, np.ndarray]:
    """Region masks and soft weights on MNI_1P5 (the definitions; see docs/phantoms.md)."""
    grid = MNI_1P5
    vox = grid.voxel_size[0]
    t1, gm, wm = template_on("t1", grid), template_on("gm", grid), template_on("wm", grid)
    brain = template_on("mask", grid) > 0.5
    x, y, z = xyz = world_coords(grid)

    # Lateral ventricles: CSF-like (dark T1, neither GM nor WM) voxels in the brain, inside a box
    # around (0, -10, 15); keep the big components off the midline (drops cisterns, 3rd ventricle).
    (bx, by, bz) = VENTRICLE_BOX_MM
    box = (x > bx[0]) & (x < bx[1]) & (y > by[0]) & (y < by[1]) & (z > bz[0]) & (z < bz[1])
    csf_like = brain & box & (t1 < 0.45) & (gm < 0.5) & (wm < 0.5)
    labels, _ = ndi.label(csf_like)
    ventricles = np.zeros(grid.shape, bool)
    for lab, sl in enumerate(ndi.find_objects(labels), start=1):
        comp = labels[sl] == lab
        if comp.sum() * vox**3 > 1000.0 and abs(float(x[sl][comp].mean())) > 4.0:
            ventricles[sl] |= comp

    ellipsoids = hippocampal_ellipsoids(xyz)
    hippocampus = brain & (gm > 0.3) & (ellipsoids <= 1.0)

    deep = _ellipsoid_distance(xyz, DEEP_GM_CENTRE_MM, DEEP_GM_RADII_MM) <= 1.0
    # Below the tentorium (cerebellum; the plane sags posteriorly and laterally) and the brainstem.
    infratentorial = ((y < -40) & (z < -4 - 0.3 * (-y - 40) - 0.35 * np.abs(x))) | (
        (np.abs(x) < 16) & (y > -45) & (y < -8) & (z < -8)
    )
    cortex_zone = brain & ~deep & ~infratentorial & (ellipsoids > 1.3)
    cortex = cortex_zone & (gm > 0.3)

    dist_to_ventricles = ndi.distance_transform_edt(~ventricles, sampling=grid.voxel_size)
    white_matter = brain & (wm > 0.5) & (dist_to_ventricles <= PERIVENTRICULAR_MM)

    sigma = 3.0 / vox
    # Frontal and parietal association cortex thins faster than occipital: +-25 % along y.
    frontal = 1.0 + 0.25 * np.clip(y / 60.0, -1.0, 1.0)
    cortex_weight = ndi.gaussian_filter(cortex_zone.astype(np.float32), sigma) * frontal
    hippocampus_weight = ndi.gaussian_filter((ellipsoids <= 1.0).astype(np.float32), sigma)
    white_matter_weight = ndi.gaussian_filter(white_matter.astype(np.float32), sigma)

    regions = (
        brain * BRAIN
        + ndi.binary_dilation(ventricles, iterations=2) * brain * VENTRICLES
        + hippocampus * HIPPOCAMPUS
        + cortex * CORTEX
        + white_matter * WHITE_MATTER
    ).astype(np.uint8)
    return {
        "ventricles": ventricles,
        "regions": regions,
        "cortex_weight": cortex_weight.astype(np.float32),
        "hippocampus_weight": hippocampus_weight.astype(np.float32),
        "white_matter_weight": white_matter_weight.astype(np.float32),
    }


@lru_cache(maxsize=6)
def anatomy_on(grid: Grid) -> Anatomy:
    """Template maps from the 1 mm source and the reference effect weights, on ``grid``."""
    ref = reference_regions()

    def from_ref(name):
        out = ref[name] if grid == MNI_1P5 else resample(ref[name], MNI_1P5.affine, grid, order=1)
        out = np.ascontiguousarray(out)
        out.setflags(write=False)
        return out

    return Anatomy(
        grid=grid,
        t1=template_on("t1", grid),
        gm=template_on("gm", grid),
        wm=template_on("wm", grid),
        cortex_weight=from_ref("cortex_weight"),
        hippocampus_weight=from_ref("hippocampus_weight"),
        white_matter_weight=from_ref("white_matter_weight"),
    )


@lru_cache(maxsize=6)
def regions_on(grid: Grid) -> np.ndarray:
    """The uint8 region bit field (REGION_BITS) on ``grid`` (nearest neighbour from the reference)."""
    ref = reference_regions()["regions"]
    out = ref if grid == MNI_1P5 else resample(ref, MNI_1P5.affine, grid, order=0)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=1)
def unit_fields() -> dict[str, np.ndarray]:
    """Unit displacement patterns (3, *COARSE.shape) in mm on the coarse world grid.

    ``ventricles``: gradient of the smoothed ventricle indicator, max length 1 mm; a backward map
    sampling along it pulls CSF outward (ventricles grow, surrounding tissue is pushed aside).
    ``hippocampus``: points away from the nearer ellipsoid centre, length ~1 mm at the ellipsoid
    surface, fading outside; sampling along it shrinks the medial temporal lobe.
    ``brain``: the coarse brain mask (for normalising the random deformation).
    """
    ref = reference_regions()
    vox = MNI_1P5.voxel_size[0]
    smoothed = ndi.gaussian_filter(ref["ventricles"].astype(np.float32), 6.0 / vox)
    grad = np.stack(np.gradient(smoothed, vox))
    coarse_vent = np.stack([resample(g, MNI_1P5.affine, COARSE, order=1) for g in grad])
    coarse_vent /= float(np.sqrt((coarse_vent**2).sum(0)).max())

    xyz = world_coords(COARSE)
    weight = resample(ref["hippocampus_weight"], MNI_1P5.affine, COARSE, order=1)
    hipp = np.zeros_like(xyz)
    for sign in (-1, 1):
        centre = np.array([c for c in HIPPOCAMPUS_CENTRES_MM if np.sign(c[0]) == sign][0], np.float32)
        side = (np.sign(xyz[0]) == sign) | (xyz[0] == 0)
        offset = (xyz - centre[:, None, None, None]) / np.array(HIPPOCAMPUS_RADII_MM, np.float32)[:, None, None, None]
        hipp += np.where(side, offset * weight, 0.0)
    brain = template_on("mask", COARSE) > 0.5
    return {"ventricles": coarse_vent.astype(np.float32), "hippocampus": hipp.astype(np.float32), "brain": brain}
