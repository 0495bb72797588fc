"""Region importance (occlusion) and faithfulness (deletion/insertion) against a model whose age is a
known function of one atlas region; the randomisation check on a small CNN; hemisphere parsing."""

import numpy as np
import pytest
import torch
from torch import nn

from napari_bavis.atlases import atlas_on_grid, load_atlas
from napari_bavis.explain.atlas_summary import atlas_summary, full_name, split_side
from napari_bavis.explain.faithfulness import faithfulness
from napari_bavis.explain.occlusion import baseline_input, forward_ages, region_importance
from napari_bavis.explain.sanity import model_randomisation
from napari_bavis.preprocess import PreprocessSpec
from napari_bavis.preprocess.templates import template_on_grid
from napari_bavis.training.data import COARSE_GRID

ATLAS = "harvard_oxford"
TARGET = "Right_Caudate"


class RegionMean(nn.Module):
    """Brain age = 50 + 10 x the mean input inside one mask: nothing else matters."""

    def __init__(self, mask: np.ndarray):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.float32)[None, None])

    def forward(self, x, sex=None):
        return 50.0 + 10.0 * (x * self.mask).flatten(1).sum(1, keepdim=True) / self.mask.sum()


@pytest.fixture(scope="module")
def setup():
    atlas = load_atlas(ATLAS)
    brain = np.asarray(template_on_grid("mask", COARSE_GRID)) >= 0.5
    labels = np.where(brain, atlas_on_grid(ATLAS, COARSE_GRID), 0)
    target = next(v for v, n in atlas.names.items() if n == TARGET)
    mask = labels == target
    assert mask.sum() > 20
    spec = PreprocessSpec(input_kind="t1", grid=COARSE_GRID, smoothing_fwhm_mm=4.0, intensity_normalisation="zscore")
    baseline = baseline_input(spec)
    rng = np.random.default_rng(0)
    # the scan: the baseline with every brain voxel changed (noise), the target region brighter by 1
    volume = (baseline + brain * rng.normal(0, 0.5, baseline.shape) + mask * 1.0).astype(np.float32)
    return atlas, brain, labels, target, mask, baseline, volume, RegionMean(mask)


def test_baseline_is_the_template_normalised_like_a_scan(setup):
    _, brain, _, _, _, baseline, _, _ = setup
    inside = baseline[brain]
    assert abs(inside.mean()) < 1e-3 and abs(inside.std() - 1) < 1e-3  # z-scored in the brain
    assert np.all(baseline[~brain] == 0)


def test_region_importance_ranks_the_only_region_the_model_reads_first_by_far(setup):
    atlas, _, labels, target, mask, baseline, volume, model = setup
    rows, record = region_importance(model, volume, labels, atlas.names, ATLAS, baseline, voxel_mm3=27.0)
    assert len(rows) >= 90 and record["regions"] == len(rows)
    assert rows[0]["label"] == target
    assert (rows[0]["region"], rows[0]["hemisphere"], rows[0]["atlas"]) == ("Caudate", "right", ATLAS)
    # hiding it removes the +1 the scan has there: the age falls by about 10 x 1 (noise averages out)
    assert rows[0]["delta_years"] == pytest.approx(-10 * (volume[mask] - baseline[mask]).mean(), abs=1e-3)
    assert rows[0]["delta_years"] < -8
    assert abs(rows[1]["delta_years"]) < 0.01 * abs(rows[0]["delta_years"])
    assert rows[0]["volume_mm3"] == pytest.approx(mask.sum() * 27.0)
    deltas = [abs(r["delta_years"]) for r in rows]
    assert deltas == sorted(deltas, reverse=True)
    assert record["age_of_scan"] == pytest.approx(forward_ages(model, volume[None])[0])


def test_deletion_falls_and_insertion_rises_faster_than_random_for_the_true_map(setup):
    _, brain, _, _, mask, baseline, volume, model = setup
    rng = np.random.default_rng(1)
    maps = {"true": (mask + 0.05 * rng.random(mask.shape)).astype(np.float32),
            "random": rng.random(mask.shape).astype(np.float32)}
    scores = faithfulness(model, volume, maps, baseline, brain, seed=0)
    true, rand = scores["true"], scores["random"]
    for key in ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc"):
        assert np.isfinite(true[key])
    # the curves share their end points: the scan's age and the age of the baseline brain
    assert true["deletion_curve"][0] == true["random_deletion_curve"][0] == true["insertion_curve"][-1]
    assert true["deletion_curve"][-1] == true["insertion_curve"][0]
    # the map of the region the model reads: the age drops at the first step and rises at the first insertion
    assert true["deletion_curve"][1] == pytest.approx(true["deletion_curve"][-1], abs=0.05)
    assert true["deletion_auc"] < true["random_deletion_auc"] - 3
    assert true["insertion_auc"] > true["random_insertion_auc"] + 3
    # a random map scores like the random ordering
    assert rand["deletion_auc"] == pytest.approx(rand["random_deletion_auc"], abs=1.5)


def test_atlas_summary_puts_a_region_map_in_that_region(setup):
    atlas, brain, labels, target, mask, _, _, _ = setup
    rows = atlas_summary(mask.astype(np.float32), labels, atlas.names, ATLAS, 27.0, brain)
    assert rows[0]["label"] == target and rows[0]["share_of_map"] == pytest.approx(1.0)
    assert rows[0]["mean_value"] == pytest.approx(1.0) and rows[0]["peak_value"] == 1.0
    assert len(rows) == 1  # nothing elsewhere
    assert set(rows[0]) >= {"region", "hemisphere", "atlas", "volume_mm3", "share_of_map", "mean_value", "peak_value"}


@pytest.mark.parametrize("name, region, side", [
    ("Left_Hippocampus", "Hippocampus", "left"), ("Right-Lateral-Ventricle", "Lateral Ventricle", "right"),
    ("ctx-lh-precuneus", "precuneus cortex", "left"), ("Precentral_R", "Precentral", "right"),
    ("GM_Hippocampus_dentate_gyrus_L", "GM Hippocampus dentate gyrus", "left"), ("Vermis_1_2", "Vermis 1 2", "midline"),
    ("Brain-Stem", "Brain Stem", "midline"), ("3rd_Ventricle", "3rd Ventricle", "midline"),
])
def test_split_side_reads_every_atlas_spelling(name, region, side):
    assert split_side(name) == (region, side)


def test_every_atlas_name_has_a_side_that_matches_where_it_lies():
    """Sided names lie on their side of the MNI midline (x < 0 left), for every offered atlas."""
    from napari_bavis.atlases import ATLASES

    for name in ATLASES:
        atlas = load_atlas(name)
        on_grid = atlas_on_grid(name, COARSE_GRID)
        x = (np.arange(COARSE_GRID.shape[0]) * COARSE_GRID.affine[0, 0] + COARSE_GRID.affine[0, 3])[:, None, None]
        x = np.broadcast_to(x, COARSE_GRID.shape)
        wrong = []
        for value, label in atlas.names.items():
            side = split_side(label)[1]
            where = x[(on_grid == value) & (x != 0)]  # the grid has a column on the midline itself
            if side == "midline" or where.size < 5:
                continue
            if np.mean(where < 0 if side == "left" else where > 0) < 0.75:  # medial regions touch the midline
                wrong.append(label)
        assert not wrong, f"{name}: {wrong[:5]}"
        assert full_name("Left_Hippocampus") == "Left Hippocampus"


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.act1 = nn.Conv3d(1, 4, 3, padding=1), nn.ReLU()
        self.conv2, self.act2 = nn.Conv3d(4, 4, 3, padding=1), nn.ReLU()
        self.head = nn.Linear(4 * 8 ** 3, 1)
        self.gradcam_layer, self.smoe_layers = "act2", ("act1", "act2")

    def forward(self, x):
        return self.head(self.act2(self.conv2(self.act1(self.conv1(x)))).flatten(1))


def test_model_randomisation_changes_gradcam_and_leaves_the_model_alone():
    torch.manual_seed(0)
    net = SmallNet().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(1, 1, 8, 8, 8)
    result = model_randomisation(net, x, ("gradcam", "smoe"))
    assert result["layers"] == ["head", "conv2", "conv1"]  # output side first
    assert [s["randomised"] for s in result["steps"]] == result["layers"]
    last = result["steps"][-1]["spearman"]
    assert last["gradcam"] is None or last["gradcam"] < 0.9  # every weight re-drawn: a different map
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])  # a copy was randomised
