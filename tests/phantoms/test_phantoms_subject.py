"""Phantom subjects: determinism, aging/disease effects, ground-truth masks, grids."""

import numpy as np
import pytest

from napari_bavis.errors import BavisError
from napari_bavis.grid import MNI_1P5, Grid
from napari_bavis.phantoms import CDRS, PhantomError, effect_sizes, make_subject

GRID_3MM = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 3.0)
VOXEL_ML_3MM = 27.0 / 1000.0


def _centroid_mm(mask, grid):
    idx = np.array(np.nonzero(mask), float)
    return grid.affine[:3, :3] @ idx.mean(axis=1) + grid.affine[:3, 3]


def _csf_in_ventricle_mask_ml(subject):
    return float(((subject.t1_model < 0.45) & subject.masks["ventricles"]).sum()) * VOXEL_ML_3MM


@pytest.fixture(scope="module")
def by_age():
    return {age: make_subject(5, age, "F", 0.0, grid=GRID_3MM) for age in (25.0, 55.0, 85.0)}


@pytest.fixture(scope="module")
def by_cdr():
    return {cdr: make_subject(5, 75.0, "F", cdr, grid=GRID_3MM) for cdr in CDRS}


def test_same_seed_same_subject_and_other_seed_differs(by_age):
    again = make_subject(5, 25.0, "F", 0.0, grid=GRID_3MM)
    first = by_age[25.0]
    np.testing.assert_array_equal(again.t1_model, first.t1_model)
    np.testing.assert_array_equal(again.gm_model, first.gm_model)
    for name, mask in first.masks.items():
        np.testing.assert_array_equal(again.masks[name], mask)
    other = make_subject(6, 25.0, "F", 0.0, grid=GRID_3MM)
    assert np.abs(other.t1_model - first.t1_model).mean() > 0.01
    assert not np.array_equal(other.masks["cortex"], first.masks["cortex"])


def test_ventricles_grow_with_age_and_with_cdr(by_age, by_cdr):
    by_age_ml = [_csf_in_ventricle_mask_ml(by_age[a]) for a in (25.0, 55.0, 85.0)]
    assert by_age_ml[0] < by_age_ml[1] < by_age_ml[2]
    assert by_age_ml[2] > 1.5 * by_age_ml[0]
    by_cdr_ml = [_csf_in_ventricle_mask_ml(by_cdr[c]) for c in CDRS]
    assert all(a < b for a, b in zip(by_cdr_ml, by_cdr_ml[1:])), by_cdr_ml
    mask_ml = [by_age[a].masks["ventricles"].sum() for a in (25.0, 55.0, 85.0)]
    assert mask_ml[0] < mask_ml[2]


def test_hippocampal_gm_falls_with_cdr(by_cdr):
    totals = [float(by_cdr[c].gm_model[by_cdr[c].masks["hippocampus"]].sum()) for c in CDRS]
    assert all(a > b for a, b in zip(totals, totals[1:])), totals
    assert totals[-1] < 0.85 * totals[0]


def test_cortical_gm_falls_with_age_more_than_hippocampus_needs_disease(by_age, by_cdr):
    means = [float(by_age[a].gm_model[by_age[a].masks["cortex"]].mean()) for a in (25.0, 55.0, 85.0)]
    assert means[0] > means[1] > means[2]
    # Disease barely touches the cortex: its change with CDR is far smaller than with 60 years of age.
    cortex_by_cdr = [float(by_cdr[c].gm_model[by_cdr[c].masks["cortex"]].mean()) for c in (0.0, 2.0)]
    assert cortex_by_cdr[0] - cortex_by_cdr[1] < 0.5 * (means[0] - means[2])


def test_effect_sizes_never_decrease_with_age_or_cdr():
    ages = np.linspace(20, 90, 29)
    for cdr in CDRS:
        sizes = [effect_sizes(a, cdr) for a in ages]
        for key in ("ventricle_mm", "cortex_loss", "hippocampus_loss", "hippocampus_mm", "white_matter_loss"):
            values = [s[key] for s in sizes]
            assert np.all(np.diff(values) > 0), (cdr, key)
    for age in (40.0, 75.0):
        for key in ("ventricle_mm", "hippocampus_loss"):
            values = [effect_sizes(age, c)[key] for c in CDRS]
            assert np.all(np.diff(values) > 0), (age, key)


def test_masks_non_empty_inside_brain_and_where_documented(by_cdr):
    subject = by_cdr[1.0]
    masks, grid = subject.masks, subject.grid
    brain = masks["brain"]
    for name in ("ventricles", "hippocampus", "cortex", "white_matter", "age", "disease"):
        assert masks[name].dtype == bool and masks[name].shape == grid.shape
        assert masks[name].sum() > 0, name
        assert not (masks[name] & ~brain).any(), name
    assert not (masks["age"] ^ (masks["ventricles"] | masks["hippocampus"] | masks["cortex"] | masks["white_matter"])).any()
    assert not (masks["disease"] ^ (masks["ventricles"] | masks["hippocampus"])).any()

    x_mm = grid.affine[0, 0] * np.arange(grid.shape[0]) + grid.affine[0, 3]
    for side in (-1.0, 1.0):
        half = masks["hippocampus"] & (np.sign(x_mm)[:, None, None] == side)
        assert np.linalg.norm(_centroid_mm(half, grid) - np.array([28.0 * side, -22.0, -14.0])) < 10.0
    assert np.linalg.norm(_centroid_mm(masks["ventricles"], grid) - np.array([0.0, -10.0, 15.0])) < 10.0
    # Ventricles are dark (CSF), cortex and hippocampus are gray matter.
    assert subject.t1_model[masks["ventricles"]].mean() < subject.t1_model[masks["white_matter"]].mean() - 0.15
    assert subject.gm_model[masks["cortex"]].mean() > 0.4
    assert subject.gm_model[masks["hippocampus"]].mean() > 0.4
    # The cortex is the brain's rim: farther from the brain's centre than the ventricles.
    centre = _centroid_mm(brain, grid)
    idx = lambda m: grid.affine[:3, :3] @ np.array(np.nonzero(m), float) + grid.affine[:3, 3:4]  # noqa: E731
    assert np.linalg.norm(idx(masks["cortex"]) - centre[:, None], axis=0).mean() > 2 * np.linalg.norm(
        idx(masks["ventricles"]) - centre[:, None], axis=0
    ).mean()


def test_default_grid_outputs_and_same_subject_across_grids(by_age):
    fine = make_subject(5, 25.0, "F", 0.0)
    assert fine.grid == MNI_1P5
    assert fine.t1_model.shape == fine.gm_model.shape == MNI_1P5.shape
    assert fine.t1_model.dtype == fine.gm_model.dtype == np.float32
    assert fine.labels == {"seed": 5, "age": 25.0, "sex": "F", "cdr": 0.0}
    assert 0.9 < np.percentile(fine.gm_model, 99.9) < 1.5 and fine.gm_model.min() >= 0.0
    # Skull-stripped: nothing but noise outside the (dilated) brain.
    from scipy.ndimage import binary_dilation

    outside = ~binary_dilation(fine.masks["brain"], iterations=3)
    assert fine.t1_model[outside].mean() < 0.05 < fine.t1_model[fine.masks["brain"]].mean()
    # Same seed on a 3 mm grid: same individual (block-averaged 1.5 mm image matches closely).
    coarse = by_age[25.0]
    block = fine.gm_model[:120, :144, :120].reshape(60, 2, 72, 2, 60, 2).mean(axis=(1, 3, 5))
    assert np.corrcoef(block.ravel(), coarse.gm_model[:60, :72, :60].ravel())[0, 1] > 0.95
    assert fine.effects == coarse.effects


def test_head_size_modulates_gm_but_not_aligned_t1(by_age):
    male = make_subject(5, 25.0, "M", 0.0, grid=GRID_3MM)
    female = by_age[25.0]
    assert male.effects["head_scale"] > female.effects["head_scale"]
    assert male.gm_model.sum() > 1.05 * female.gm_model.sum()
    assert abs(male.masks["brain"].sum() - female.masks["brain"].sum()) < 0.01 * female.masks["brain"].sum()


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"seed": 1, "age": 95.0, "sex": "F", "cdr": 0.0}, "age"),
        ({"seed": 1, "age": 50.0, "sex": "female", "cdr": 0.0}, "sex"),
        ({"seed": 1, "age": 50.0, "sex": "F", "cdr": 3.0}, "cdr"),
        ({"seed": -1, "age": 50.0, "sex": "F", "cdr": 0.0}, "seed"),
    ],
)
def test_bad_arguments_give_one_line_errors(kwargs, word):
    with pytest.raises(PhantomError) as info:
        make_subject(**kwargs, grid=GRID_3MM)
    assert isinstance(info.value, BavisError) and isinstance(info.value, ValueError)
    assert word in str(info.value) and "\n" not in str(info.value)
