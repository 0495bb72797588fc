"""Synthetic aging cohort: MNI152-template phantoms with known age, sex, CDR and ground-truth regions.

Each subject is the template brain with (1) aging effects that grow with a "tissue age" (its age
plus a random biological offset), (2) disease effects that grow with CDR, and (3) nuisance
variability (smooth deformation, head size, bias field, noise, scanner pose). The regions where
(1) and (2) act are returned as masks, so explanation maps can be scored against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Mapping

import nibabel as nib
import numpy as np

from ..errors import BavisError
from ..grid import MNI_1P5, Grid
from . import _anatomy as anat
from ._deform import displacement_on, exponentiate, random_velocity, sample_coordinates, warp

SEXES = ("F", "M")
CDRS = (0.0, 0.5, 1.0, 2.0)
#: Years of extra aging that disease adds to the ventricles and hippocampi (a quarter of it elsewhere).
DISEASE_YEARS = {0.0: 0.0, 0.5: 5.0, 1.0: 11.0, 2.0: 22.0}
#: Ordinal disease severity per CDR (drives the disease-only hippocampal loss).
SEVERITY = {0.0: 0.0, 0.5: 1.0, 1.0: 2.0, 2.0: 3.0}
#: Default CDR mix of a cohort (applied to subjects at or above ``disease_min_age``; younger ones are CDR 0).
DEFAULT_CDR_WEIGHTS = {0.0: 0.7, 0.5: 0.15, 1.0: 0.1, 2.0: 0.05}
#: Head size: global scale per sex (volume ratio M/F about 1.12) and its spread.
HEAD_SCALE = {"F": 1.0, "M": 1.04}
HEAD_SCALE_SD = 0.02
#: Scanner storage orders a native phantom may come in.
STORAGE_ORDERS = ("LPS", "RAS", "LAS", "LPI", "RPI", "ASL", "PIR")

SAMPLE_KINDS = {
    "young healthy": {"seed": 1101, "age": 25.0, "sex": "F", "cdr": 0.0},
    "old healthy": {"seed": 2202, "age": 75.0, "sex": "M", "cdr": 0.0},
    "old AD-like": {"seed": 2202, "age": 75.0, "sex": "M", "cdr": 2.0},
}


class PhantomError(BavisError, ValueError):
    """Bad arguments to the phantom generator."""


@dataclass
class Subject:
    """One synthetic subject. Arrays are on ``grid`` (NIfTI i, j, k order, RAS-aligned)."""

    labels: dict  # seed, age, sex, cdr
    t1_model: np.ndarray  # float32 T1 after affine alignment to MNI (skull-stripped, ~0..1)
    gm_model: np.ndarray  # float32 modulated GM map (~0..1.2)
    masks: dict  # name -> bool array: ground truth of where the effects act
    grid: Grid
    effects: dict  # scalar sizes of every effect, for checks and plots
    t1_native: nib.Nifti1Image | None = None
    native_pose: dict | None = field(default=None)  # rotation, translation, voxel size, storage, to_mni


def effect_sizes(age: float, cdr: float, tissue_age_offset: float = 0.0) -> dict:
    """Sizes of the aging and disease effects for one subject.

    ``ventricle_mm``: peak speed of the outward ventricular flow; ``cortex_loss`` /
    ``hippocampus_loss``: fraction of GM removed at full regional weight; ``hippocampus_mm``:
    medial-temporal shrinkage at the ellipsoid surface; ``white_matter_loss``: fraction of the
    WM-CSF T1 contrast lost around the ventricles.
    """
    tissue_age = age + tissue_age_offset
    dy = DISEASE_YEARS[cdr]
    tc = float(np.clip((tissue_age + dy / 4 - 20.0) / 70.0, -0.15, 1.6))
    td = float(np.clip((tissue_age + dy - 20.0) / 70.0, -0.15, 1.8))
    hipp_loss = 0.12 * (0.4 * td + 0.6 * td**2) + 0.04 * SEVERITY[cdr]
    return {
        "tissue_age": float(tissue_age),
        "ventricle_mm": 6.5 * (0.3 * td + 0.7 * td**2),
        "cortex_loss": 0.22 * (0.75 * tc + 0.25 * tc**2),
        "hippocampus_loss": hipp_loss,
        "hippocampus_mm": 10.0 * hipp_loss,
        "white_matter_loss": 0.25 * (0.3 * tc + 0.7 * tc**2),
    }


def _check(seed, age, sex, cdr, grid) -> tuple[int, float, str, float]:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PhantomError(f"seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(age, (int, float, np.number)) and 20.0 <= float(age) <= 90.0):
        raise PhantomError(f"age must be between 20 and 90 years, got {age!r}")
    if sex not in SEXES:
        raise PhantomError(f"sex must be 'F' or 'M', got {sex!r}")
    if cdr not in CDRS:
        raise PhantomError(f"cdr must be one of 0, 0.5, 1, 2, got {cdr!r}")
    if not isinstance(grid, Grid):
        raise PhantomError(f"grid must be a napari_bavis.grid.Grid, got {type(grid).__name__}")
    return int(seed), float(age), sex, float(cdr)


def _modified_templates(a: anat.Anatomy, fx: dict) -> tuple[np.ndarray, np.ndarray]:
    """Template T1 and GM with tissue loss applied in template space (before any warping)."""
    gm_lost = a.gm * (fx["cortex_loss"] * a.cortex_weight * np.clip(1.0 - a.wm, 0.0, 1.0))
    gm_lost += a.gm * (fx["hippocampus_loss"] * a.hippocampus_weight)
    gm = a.gm - gm_lost
    # Lost GM becomes CSF; rarefied WM drifts towards CSF intensity.
    t1 = a.t1 - gm_lost * (anat.T1_GM - anat.T1_CSF)
    t1 -= (fx["white_matter_loss"] * (anat.T1_WM - anat.T1_CSF)) * a.white_matter_weight * a.wm
    return t1, gm


def _bias(grid: Grid, coeffs: np.ndarray, strength: float) -> np.ndarray:
    """Smooth multiplicative field exp(strength * quadratic in normalised MNI coordinates)."""
    x, y, z = anat.world_coords(grid)
    x, y, z = x / 90.0, (y + 18.0) / 108.0, (z - 18.0) / 90.0
    poly = coeffs[0] * x + coeffs[1] * y + coeffs[2] * z + coeffs[3] * x * y + coeffs[4] * (z * z - 0.33) + coeffs[5] * y * z
    return np.exp(strength * poly / (np.abs(coeffs).sum() + 1e-6)).astype(np.float32)


def _rician(image: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    real = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sd)
    imag = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sd)
    return np.sqrt(real * real + imag * imag)


def _scale_about(centre: np.ndarray, scale: float) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] *= scale
    m[:3, 3] = centre - scale * centre
    return m


def make_subject(
    seed: int,
    age: float,
    sex: str,
    cdr: float,
    grid: Grid = MNI_1P5,
    native: bool = False,
    *,
    bio_age_sd: float = 3.0,
    deformation_mm: float = 2.0,
    modulate: bool = True,
    t1_noise_sd: float = 0.015,
    gm_noise_sd: float = 0.01,
    t1_bias_strength: float = 0.05,
) -> Subject:
    """One phantom; identical output for identical arguments.

    The seed alone fixes the subject's anatomy (biological age offset, head size, deformation),
    bias field, noise and scanner pose, so changing ``age`` or ``cdr`` at a fixed seed shows
    the pure effect of aging or disease on the same individual.
    """
    seed, age, sex, cdr = _check(seed, age, sex, cdr, grid)
    anatomy_rng, intensity_rng, noise_rng, pose_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    offset = float(anatomy_rng.standard_normal()) * bio_age_sd
    scale = HEAD_SCALE[sex] * float(np.exp(HEAD_SCALE_SD * anatomy_rng.standard_normal()))
    noise = anatomy_rng.standard_normal((3,) + tuple(anat.COARSE.shape), dtype=np.float32)
    bias_coeffs = intensity_rng.standard_normal(6)

    fx = effect_sizes(age, cdr, offset)
    fx["head_scale"] = scale
    fields = anat.unit_fields()
    velocity = fx["ventricle_mm"] * fields["ventricles"] + fx["hippocampus_mm"] * fields["hippocampus"]
    if deformation_mm > 0:
        velocity += random_velocity(noise, fields["brain"], deformation_mm)
    u_coarse = exponentiate(velocity)

    a = anat.anatomy_on(grid)
    coords = sample_coordinates(displacement_on(u_coarse, grid), grid)
    t1_pre, gm_pre = _modified_templates(a, fx)
    t1 = warp(t1_pre, coords)
    gm = warp(gm_pre, coords)
    regions = warp(anat.regions_on(grid), coords, order=0)
    del coords

    if t1_bias_strength:
        t1 *= _bias(grid, bias_coeffs, t1_bias_strength)
    if t1_noise_sd:
        t1 = _rician(t1, t1_noise_sd, noise_rng)
    if modulate:
        gm *= np.float32(scale**3)
    if gm_noise_sd:
        gm += noise_rng.standard_normal(gm.shape, dtype=np.float32) * np.float32(gm_noise_sd)
        np.clip(gm, 0.0, None, out=gm)

    masks = {name: (regions & bit) > 0 for name, bit in anat.REGION_BITS.items()}
    masks["age"] = masks["ventricles"] | masks["hippocampus"] | masks["cortex"] | masks["white_matter"]
    masks["disease"] = masks["ventricles"] | masks["hippocampus"]

    subject = Subject(
        labels={"seed": seed, "age": age, "sex": sex, "cdr": cdr},
        t1_model=t1.astype(np.float32, copy=False),
        gm_model=gm.astype(np.float32, copy=False),
        masks=masks,
        grid=grid,
        effects=fx,
    )
    if native:
        subject.t1_native, subject.native_pose = _native(u_coarse, fx, scale, pose_rng)
    return subject


def _native(u_coarse: np.ndarray, fx: dict, scale: float, rng: np.random.Generator):
    """The subject's own-size head on the 1 mm template grid, moved into a random scanner pose."""
    from ..samples import rigid_matrix, to_scanner_space

    pose = {
        "rotation_deg": tuple(float(v) for v in np.clip(rng.normal(0.0, 8.0, 3), -20, 20)),
        "translation_mm": tuple(float(v) for v in rng.normal(0.0, 10.0, 3)),
        "voxel_size": tuple(float(v) for v in np.round(rng.uniform(1.0, 1.2, 3), 3)),
        "storage": STORAGE_ORDERS[int(rng.integers(len(STORAGE_ORDERS)))],
        "bias_strength": float(rng.uniform(0.1, 0.3)),
        "noise_sd": float(rng.uniform(0.01, 0.03)),
        "seed": int(rng.integers(2**31)),
    }
    src = anat.native_grid()
    a = anat.anatomy_on(src)
    t1_pre, _ = _modified_templates(a, fx)
    t1 = warp(t1_pre, sample_coordinates(displacement_on(u_coarse, src), src))
    np.clip(t1, 0.0, None, out=t1)
    # Head size: scale about the brain's centre; the model-grid images have it removed (affine alignment).
    idx = np.array(np.nonzero(t1 > np.percentile(t1, 50)))
    centre = src.affine[:3, :3] @ idx.mean(axis=1) + src.affine[:3, 3]
    head = nib.Nifti1Image(t1, _scale_about(centre, scale) @ src.affine)
    image = to_scanner_space(head, **pose)
    # to_scanner_space rotates about the centre of mass of the voxels above the median, which
    # scaling about that same centre leaves in place: scanner = rigid @ scale @ MNI.
    moved = rigid_matrix(pose["rotation_deg"], pose["translation_mm"], centre) @ _scale_about(centre, scale)
    pose["to_mni"] = np.linalg.inv(moved)
    return image, pose


def plan_cohort(
    n: int,
    seed: int,
    ages: tuple[float, float] = (20.0, 90.0),
    cdr_weights: Mapping[float, float] | None = None,
    disease_min_age: float = 55.0,
    male_fraction: float = 0.5,
) -> list[dict]:
    """Labels (seed, age, sex, cdr) of ``n`` subjects; subject i is the same whatever ``n`` is."""
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise PhantomError(f"n must be a non-negative integer, got {n!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PhantomError(f"seed must be a non-negative integer, got {seed!r}")
    lo, hi = (float(v) for v in ages)
    if not 20.0 <= lo <= hi <= 90.0:
        raise PhantomError(f"ages must be a range within 20..90 years, got {ages!r}")
    weights = dict(DEFAULT_CDR_WEIGHTS if cdr_weights is None else cdr_weights)
    if any(float(c) not in CDRS for c in weights) or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise PhantomError(f"cdr_weights must map CDRs from 0, 0.5, 1, 2 to non-negative weights, got {weights!r}")
    cdrs = np.array([float(c) for c in weights])
    probs = np.array(list(weights.values()), float)
    probs /= probs.sum()
    plan = []
    for i in range(int(n)):
        subject_seed = int(np.random.SeedSequence((int(seed), i)).generate_state(1)[0])
        rng = np.random.default_rng(subject_seed)
        age = float(rng.uniform(lo, hi))
        sex = "M" if rng.uniform() < male_fraction else "F"
        draw = rng.uniform()
        cdr = float(cdrs[np.searchsorted(np.cumsum(probs), draw, side="right").clip(max=len(cdrs) - 1)])
        if age < disease_min_age:
            cdr = 0.0
        plan.append({"seed": subject_seed, "age": round(age, 2), "sex": sex, "cdr": cdr})
    return plan


def make_cohort(
    n: int,
    seed: int,
    ages: tuple[float, float] = (20.0, 90.0),
    cdr_weights: Mapping[float, float] | None = None,
    grid: Grid = MNI_1P5,
    native: bool = False,
    disease_min_age: float = 55.0,
    male_fraction: float = 0.5,
    **subject_kwargs,
) -> Iterator[Subject]:
    """Yield ``n`` subjects (lazily) following ``plan_cohort``; each carries its own seed in ``labels``."""
    for labels in plan_cohort(n, seed, ages, cdr_weights, disease_min_age, male_fraction):
        yield make_subject(grid=grid, native=native, **labels, **subject_kwargs)


def sample_subject(kind: str) -> nib.Nifti1Image:
    """Native-space T1 of a sample-data phantom: "young healthy", "old healthy" or "old AD-like".

    "old healthy" and "old AD-like" are the same individual (same seed, age and sex); only the
    disease differs.
    """
    if kind not in SAMPLE_KINDS:
        raise PhantomError(f"unknown sample {kind!r}; choose one of: {', '.join(SAMPLE_KINDS)}")
    spec = SAMPLE_KINDS[kind]
    return make_subject(spec["seed"], spec["age"], spec["sex"], spec["cdr"], native=True).t1_native
