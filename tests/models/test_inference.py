"""Device choice, bias-correction maths, predict_age and compare."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from napari_bavis import models
from napari_bavis.errors import BavisError
from napari_bavis.grid import Grid

GRID = Grid.from_bbox(((0, 5), (0, 6), (0, 7)), 1.0)  # 6x7x8 voxels


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg, msg
    return msg


# --- device -----------------------------------------------------------------------------------

def test_auto_device_falls_back_to_cpu_without_cuda_or_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert models.pick_device() == torch.device("cpu")
    assert models.pick_device("auto") == torch.device("cpu")
    with pytest.raises(models.DeviceError) as err:
        models.pick_device("cuda")
    assert "CUDA" in _one_line(err)
    with pytest.raises(models.DeviceError):
        models.pick_device("mps")


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert models.pick_device("auto").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert models.pick_device("auto").type == "cuda"


def test_explicit_cpu_and_bad_names():
    assert models.pick_device("CPU") == torch.device("cpu")
    assert models.pick_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(models.DeviceError) as err:
        models.pick_device("tpu")
    assert "tpu" in _one_line(err)


# --- bias correction ---------------------------------------------------------------------------

def test_regression_on_age_correction_by_hand():
    coef = {"method": "regression-on-age", "alpha": 0.8, "beta": 14.0}
    # ŷ = 70, y = 60: corrected age (70 - 14) / 0.8 = 70.0; gap 10
    assert models.correct_brain_age(70.0, 60.0, coef) == pytest.approx(70.0)
    assert models.corrected_gap(70.0, 60.0, coef) == pytest.approx(10.0)
    # ŷ = 62, y = 75: (62 - 14) / 0.8 = 60; gap -15
    assert models.corrected_gap(62.0, 75.0, coef) == pytest.approx(-15.0)


def test_offset_correction_by_hand():
    coef = {"method": "offset", "alpha": -0.25, "beta": 17.5}
    # δ = 72 - 70 = 2; expected δ at 70 = -17.5 + 17.5 = 0 -> δc = 2
    assert models.corrected_gap(72.0, 70.0, coef) == pytest.approx(2.0)
    # δ = 50 - 40 = 10; expected δ at 40 = -10 + 17.5 = 7.5 -> δc = 2.5; corrected age 42.5
    assert models.corrected_gap(50.0, 40.0, coef) == pytest.approx(2.5)
    assert models.correct_brain_age(50.0, 40.0, coef) == pytest.approx(42.5)


def test_fit_recovers_known_coefficients_and_removes_age_dependence():
    y = np.array([20.0, 35.0, 50.0, 65.0, 80.0])
    pred = 0.7 * y + 15.0 + np.array([1.0, -1.0, 0.0, 1.0, -1.0])
    reg = models.fit_bias_correction(pred, y, "regression-on-age")
    # slope by hand: Σ(y-ȳ)·noise = -30·1 + -15·-1 + 0 + 15·1 + 30·-1 = -30 and Σ(y-ȳ)² = 2250,
    # so α = 0.7 - 30/2250
    assert reg["alpha"] == pytest.approx(0.7 - 30 / 2250)
    assert reg["beta"] == pytest.approx(pred.mean() - reg["alpha"] * 50.0)
    off = models.fit_bias_correction(pred, y, "offset")
    assert off["alpha"] == pytest.approx(reg["alpha"] - 1.0) and off["beta"] == pytest.approx(reg["beta"])
    gaps = models.corrected_gap(pred, y, off)
    assert abs(np.corrcoef(gaps, y)[0, 1]) < 1e-9  # residuals of a fit are uncorrelated with age
    with pytest.raises(BavisError):
        models.fit_bias_correction([1.0, 2.0], [5.0, 5.0])
    with pytest.raises(BavisError):
        models.fit_bias_correction([1.0], [5.0], "smith")


# --- predict_age with small stand-in models ------------------------------------------------------

class MeanAge(nn.Module):
    """Age = 50 + 10·mean(x) + 3·sex: outputs computable by hand."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x, sex=None):
        s = torch.zeros(x.shape[0], 1) if sex is None else sex
        return 50.0 + self.scale * x.mean(dim=(1, 2, 3, 4)).reshape(-1, 1) + 3.0 * s


class FixedSlabs(MeanAge):
    def forward_slabs(self, x, sex=None):
        return torch.tensor([[60.0, 62.0, 64.0, 66.0]]) + 0 * self.scale


def _card(**kw):
    base = dict(grid=GRID.to_dict(), training_age_range=[45.0, 85.0])
    base.update(kw)
    return models.default_card("ba3d", name="stub", **base)


def test_predict_age_gap_and_corrected_gap():
    vol = np.full((6, 7, 8), 2.0, dtype=np.float32)
    card = _card(bias_correction={"method": "regression-on-age", "alpha": 0.5, "beta": 30.0})
    p = models.predict_age(MeanAge(), card, vol, sex="M", chronological_age=68.0)
    assert p.brain_age == pytest.approx(50 + 20 + 3)
    assert p.gap == pytest.approx(73 - 68)
    assert p.brain_age_corrected == pytest.approx((73 - 30) / 0.5)
    assert p.gap_corrected == pytest.approx((73 - 30) / 0.5 - 68)
    assert p.correction_method == "regression-on-age"
    assert p.slab_ages is None and p.uncertainty is None and p.out_of_range_warning is None
    assert p.to_dict()["brain_age"] == pytest.approx(73.0)


def test_sex_uses_the_cards_encoding_and_is_required():
    vol = torch.zeros(1, 1, 6, 7, 8)
    flipped = _card(sex_encoding={"F": 1.0, "M": 0.0})
    assert models.predict_age(MeanAge(), flipped, vol, sex="f").brain_age == pytest.approx(53.0)
    assert models.predict_age(MeanAge(), flipped, vol, sex="male").brain_age == pytest.approx(50.0)
    with pytest.raises(BavisError) as err:
        models.predict_age(MeanAge(), flipped, vol)
    assert "sex" in _one_line(err)
    with pytest.raises(BavisError):
        models.predict_age(MeanAge(), flipped, vol, sex="X")
    no_sex = _card(sex_encoding=None)
    assert models.predict_age(MeanAge(), no_sex, vol, sex="M").brain_age == pytest.approx(50.0)


def test_slab_models_report_slab_ages_and_their_spread():
    p = models.predict_age(FixedSlabs(), _card(), np.zeros((6, 7, 8)), sex="F", chronological_age=60)
    assert p.slab_ages == [60.0, 62.0, 64.0, 66.0]
    assert p.brain_age == pytest.approx(63.0)
    assert p.uncertainty == pytest.approx(math.sqrt(20 / 3))  # sample SD of 60, 62, 64, 66
    assert p.gap == pytest.approx(3.0) and p.gap_corrected is None


def test_a_predicted_age_outside_the_training_range_warns_without_a_given_age():
    young = _card(training_age_range=[20.0, 30.0])
    p = models.predict_age(MeanAge(), young, np.zeros((6, 7, 8)), sex="F")  # brain age 50, no age given
    assert p.chronological_age is None
    assert "brain age 50.0 is outside the model's training range 20-30" in p.out_of_range_warning
    both = models.predict_age(MeanAge(), young, np.zeros((6, 7, 8)), sex="F", chronological_age=40)
    assert "brain age 50.0" in both.out_of_range_warning and "chronological age 40" in both.out_of_range_warning
    inside = models.predict_age(MeanAge(), young, np.zeros((6, 7, 8)) - 2.5, sex="F", chronological_age=25)
    assert inside.brain_age == pytest.approx(25.0) and inside.out_of_range_warning is None


def test_out_of_range_age_warns_and_bad_inputs_are_refused():
    p = models.predict_age(MeanAge(), _card(), np.zeros((6, 7, 8)), sex="F", chronological_age=30)
    assert "outside the training range 45-85" in p.out_of_range_warning
    with pytest.raises(BavisError) as err:
        models.predict_age(MeanAge(), _card(), np.zeros((121, 145, 121)), sex="F")
    assert "6x7x8" in _one_line(err)
    bad = np.zeros((6, 7, 8))
    bad[0, 0, 0] = np.nan
    with pytest.raises(BavisError):
        models.predict_age(MeanAge(), _card(), bad, sex="F")
    with pytest.raises(BavisError):
        models.predict_age(MeanAge(), _card(), np.zeros((6, 7, 8)), sex="F", chronological_age=-3)


def test_predict_age_is_deterministic_on_cpu_and_restores_training_mode():
    torch.manual_seed(0)
    model = models.build("ba_slab", width=4, blocks=[1, 1, 1, 1])  # true input size, small width
    model.train()
    card = models.default_card("ba_slab")
    vol = torch.rand(121, 145, 121)
    a = models.predict_age(model, card, vol, sex="F")
    b = models.predict_age(model, card, vol.numpy(), sex="F")
    assert model.training
    assert a.brain_age == b.brain_age and a.slab_ages == b.slab_ages
    assert len(a.slab_ages) == 20 and a.uncertainty > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_autocast_matches_float32_within_a_tenth_of_a_year():
    torch.manual_seed(0)
    card = models.default_card("ba_slab")
    model = models.build("ba_slab").cuda()
    with torch.no_grad():  # a trained-looking output scale: ages around 60 years
        model.head.out.bias.fill_(60.0)
    vol = torch.rand(121, 145, 121)
    full = models.predict_age(model, card, vol, sex="M")
    half = models.predict_age(model, card, vol, sex="M", amp=True)
    assert abs(full.brain_age - half.brain_age) < 0.1


# --- compare ------------------------------------------------------------------------------------

class FixedEmbedding(nn.Module):
    """Embedding = normalised (mean(x), 1, 0)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3, 4))
        e = torch.stack([m, torch.ones_like(m), torch.zeros_like(m)], dim=1) * self.w
        return nn.functional.normalize(e, dim=1)


def test_a_compared_age_outside_the_siamese_training_range_is_a_warning():
    from napari_bavis.models.inference import compare_age_warning

    card = models.default_card("siamese3d", name="pairs", grid=GRID.to_dict(), training_age_range=[65.0, 85.0])
    young = compare_age_warning(card, 25, "scan A")
    assert young.startswith("scan A: chronological age 25 is outside the model's training range 65-85 years")
    assert compare_age_warning(card, 90.5, "scan B").startswith("scan B: chronological age 90.5 is outside")
    assert compare_age_warning(card, 65, "scan A") is None and compare_age_warning(card, 85, "scan A") is None
    assert compare_age_warning(card, None, "scan A") is None
    no_range = models.default_card("siamese3d", name="pairs", grid=GRID.to_dict())
    assert compare_age_warning(no_range, 25, "scan A") is None
    with pytest.raises(BavisError) as err:
        compare_age_warning(card, float("nan"), "scan B")
    assert _one_line(err).startswith("scan B: chronological age must be a positive number")


def test_compare_cosine_distance_and_nearest_reference():
    card = models.default_card(
        "siamese3d", name="pairs", grid=GRID.to_dict(),
        reference_embeddings={"healthy": [0.0, 1.0, 0.0], "AD-like": [1.0, 0.0, 0.0]},
    )
    a = np.zeros((6, 7, 8))  # embedding (0, 1, 0)
    b = np.full((6, 7, 8), 3.0)  # embedding (3, 1, 0)/√10
    s = models.compare(FixedEmbedding(), card, a, b)
    assert s.cosine == pytest.approx(1 / math.sqrt(10))
    assert s.distance == pytest.approx(math.sqrt(2 - 2 / math.sqrt(10)))
    assert s.nearest_reference_a == "healthy" and s.nearest_reference_b == "AD-like"
    assert s.reference_similarities_b == pytest.approx({"healthy": 1 / math.sqrt(10), "AD-like": 3 / math.sqrt(10)})
    same = models.compare(FixedEmbedding(), card, b, b)
    assert same.cosine == pytest.approx(1.0) and same.distance == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(BavisError) as err:
        models.predict_age(FixedEmbedding(), card, a)
    assert "siamese" in _one_line(err)
