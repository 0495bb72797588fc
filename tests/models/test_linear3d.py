"""Linear3D: ensemble mean, block-mean pooling by hand, member spread as uncertainty, Grad-CAM = ReLU(w * (x - centre)),
checkpoint round trip."""

import math

import numpy as np
import pytest
import torch

from napari_bavis import models
from napari_bavis.explain import compute_maps
from napari_bavis.grid import Grid

SHAPE = (7, 9, 5)  # not divisible by the pool: partial blocks at every far edge (ceil_mode)
POOL = 3
GRID = Grid.from_bbox(((0, SHAPE[0] - 1), (0, SHAPE[1] - 1), (0, SHAPE[2] - 1)), 1.0)


def _pooled_shape(shape, pool):
    return tuple(math.ceil(s / pool) for s in shape)


def _fitted(shape=SHAPE, pool=POOL, members=4, seed=0):
    """A Linear3D with random centre, weights and biases (as ``train_real_brain_age`` loads a fit)."""
    rng = np.random.default_rng(seed)
    p = _pooled_shape(shape, pool)
    model = models.build("linear3d", volume_shape=list(shape), pool=pool, members=members).eval()
    fit = dict(centre=rng.normal(size=p), weights=rng.normal(size=(members, *p)), biases=rng.uniform(30, 70, members))
    model.set_fit(fit["centre"], fit["weights"], fit["biases"])
    return model, fit


def _block_means(x: np.ndarray, pool: int) -> np.ndarray:
    """Mean of each pool^3 block, the last block of an axis holding whatever voxels are left."""
    out = np.zeros(_pooled_shape(x.shape, pool))
    for i, j, k in np.ndindex(*out.shape):
        out[i, j, k] = x[i * pool:(i + 1) * pool, j * pool:(j + 1) * pool, k * pool:(k + 1) * pool].mean()
    return out


def _card(members_shape=SHAPE, **kw):
    grid = Grid.from_bbox(((0, members_shape[0] - 1), (0, members_shape[1] - 1), (0, members_shape[2] - 1)), 1.0)
    return models.default_card("linear3d", name="linear-test", grid=grid.to_dict(), sex_encoding=None, **kw)


def test_forward_is_the_mean_of_the_members():
    model, _ = _fitted()
    x = torch.randn(3, 1, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        members = model.forward_members(x)
        mean = model(x)
    assert members.shape == (3, 4) and mean.shape == (3, 1)
    assert members.std(dim=1).min() > 0.1  # the members really differ, so the mean is a real check
    torch.testing.assert_close(mean[:, 0], members.mean(dim=1), rtol=1e-5, atol=1e-4)


def test_member_ages_are_bias_plus_weighted_block_means_by_hand():
    model, fit = _fitted(seed=2)
    x = np.random.default_rng(3).normal(size=SHAPE)
    deviation = _block_means(x, POOL) - fit["centre"]
    expected = fit["biases"] + np.array([(w * deviation).sum() for w in fit["weights"]])
    with torch.no_grad():
        got = model.forward_members(torch.as_tensor(x, dtype=torch.float32)[None, None])[0].double().numpy()
        mean = float(model(torch.as_tensor(x, dtype=torch.float32)[None, None]))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert mean == pytest.approx(expected.mean(), abs=1e-4)


def test_pool_one_uses_every_voxel():
    model, fit = _fitted(pool=1, members=2, seed=4)
    x = np.random.default_rng(5).normal(size=SHAPE)
    expected = fit["biases"] + (fit["weights"] * (x - fit["centre"])).reshape(2, -1).sum(axis=1)
    with torch.no_grad():
        got = model.forward_members(torch.as_tensor(x, dtype=torch.float32)[None, None])[0].double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_predict_age_reports_the_member_spread_as_uncertainty():
    model, _ = _fitted(seed=6)
    x = np.random.default_rng(7).normal(size=SHAPE).astype(np.float32)
    with torch.no_grad():
        members = model.forward_members(torch.as_tensor(x)[None, None])[0].double().numpy()
    p = models.predict_age(model, _card(), x)
    assert p.brain_age == pytest.approx(members.mean(), abs=1e-4)
    assert p.uncertainty == pytest.approx(members.std(ddof=1), rel=1e-4)
    assert p.uncertainty != pytest.approx(members.std(ddof=0), rel=1e-4)  # ddof=1, not the population SD
    assert p.slab_ages is None

    single, fit = _fitted(members=1, seed=8)
    q = models.predict_age(single, _card(), x)
    assert q.uncertainty is None
    with torch.no_grad():
        assert q.brain_age == pytest.approx(float(single(torch.as_tensor(x)[None, None])), abs=1e-4)


def test_gradcam_is_the_positive_part_of_the_contributions():
    shape = (10, 12, 8)
    model, fit = _fitted(shape=shape, pool=1, members=3, seed=9)
    x = np.random.default_rng(10).normal(size=shape)
    contribution = fit["weights"].mean(axis=0) * (x - fit["centre"])  # what forward uses: the mean weight map
    maps = compute_maps(model, torch.as_tensor(x, dtype=torch.float32)[None, None], methods=("gradcam",))
    cam = maps["gradcam"]
    assert cam.shape == shape
    assert cam.max() == pytest.approx(1.0)  # normalised to [0, 1]
    negative = contribution < 0
    assert 0.2 < negative.mean() < 0.8  # both signs present, so both halves of the check bite
    assert np.abs(cam[negative]).max() < 1e-6  # voxels that make the brain look younger get nothing
    expected = np.maximum(contribution, 0)
    r = np.corrcoef(cam[~negative], expected[~negative])[0, 1]
    assert r > 0.99
    np.testing.assert_allclose(cam, expected / expected.max(), atol=1e-4)


def test_checkpoint_round_trip_keeps_the_predictions(tmp_path):
    model, _ = _fitted(seed=11)
    card = _card(training_age_range=[18.0, 60.0])
    path = tmp_path / "linear.pt"
    models.save_checkpoint(path, model, card)
    loaded, loaded_card = models.load_checkpoint(path, device="cpu")
    assert loaded_card.architecture == "linear3d"
    assert loaded_card.architecture_kwargs == {"volume_shape": list(SHAPE), "pool": POOL, "members": 4}
    x = torch.randn(2, 1, *SHAPE, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        assert torch.equal(model.forward_members(x), loaded.forward_members(x))
        assert torch.equal(model(x), loaded(x))
    vol = x[0, 0].numpy()
    a, b = models.predict_age(model, card, vol), models.predict_age(loaded, loaded_card, vol)
    assert a.brain_age == b.brain_age and a.uncertainty == b.uncertainty
