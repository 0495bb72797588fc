"""Every built-in architecture at its true input size (small widths where the behaviour allows)."""

import math

import pytest
import torch
from torch import nn

from napari_bavis import models
from napari_bavis.errors import CheckpointError

SMALL = {
    "ba_slab": {"width": 4, "blocks": [1, 1, 1, 1]},
    "ba3d": {"channels": [4, 8, 8, 8, 8], "final_channels": 8},
    "sfcn": {"channel_number": [4, 8, 8, 8, 8, 4]},
    "siamese2d": {"width": 4, "blocks": [1, 1, 1, 1]},
    "siamese3d": {"channels": [4, 8, 8, 8, 8], "final_channels": 8},
    "linear3d": {"volume_shape": [121, 145, 121], "pool": 4, "members": 2},
}
TRUE_SHAPE = {"sfcn": (160, 192, 160)}


@pytest.fixture(scope="module")
def forwards():
    """One true-size forward per architecture, with every hooked layer recording its calls."""
    torch.manual_seed(0)
    out = {}
    for name in models.available():
        model = models.build(name, **SMALL[name]).eval()
        shape = TRUE_SHAPE.get(name, (121, 145, 121))
        x = torch.rand(1, 1, *shape)
        mods = dict(model.named_modules())
        calls = {}
        hooks = [mods[n].register_forward_hook(lambda m, i, o, n=n: calls.setdefault(n, []).append(tuple(o.shape)))
                 for n in {model.gradcam_layer, *model.smoe_layers}]
        with torch.no_grad():
            y = model(x, torch.ones(1, 1)) if model.task == "brain_age" else model(x)
        for h in hooks:
            h.remove()
        out[name] = (model, x, y, calls)
    return out


def test_registry_lists_every_architecture_and_refuses_unknown_names():
    assert set(models.available()) == {"ba_slab", "ba3d", "sfcn", "siamese2d", "siamese3d", "linear3d"}
    with pytest.raises(CheckpointError, match="unknown architecture 'resnet'"):
        models.build("resnet")
    with pytest.raises(CheckpointError, match="cannot build 'ba3d'"):
        models.build("ba3d", no_such_kwarg=1)


@pytest.mark.parametrize("name", ["ba_slab", "ba3d", "sfcn", "siamese2d", "siamese3d", "linear3d"])
def test_true_size_forward_gives_the_contract_output(forwards, name):
    model, x, y, _ = forwards[name]
    assert model.architecture == name and model.architecture_kwargs == SMALL[name]
    assert torch.isfinite(y).all()
    if model.task == "brain_age":
        assert y.shape == (1, 1)
    else:
        assert y.shape == (1, 128)
        assert torch.linalg.norm(y, dim=1).item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", ["ba_slab", "ba3d", "sfcn", "siamese2d", "siamese3d", "linear3d"])
def test_hooked_layers_are_separate_non_inplace_relus_called_once(forwards, name):
    model, _, _, calls = forwards[name]
    mods = dict(model.named_modules())
    layers = [model.gradcam_layer, *model.smoe_layers]
    assert model.gradcam_layer == model.smoe_layers[-1]
    for layer in layers:
        assert isinstance(mods[layer], nn.ReLU) and not mods[layer].inplace, layer
        assert len(calls[layer]) == 1, f"{layer} is used at {len(calls[layer])} sites"
    # each SMOE layer is at a different resolution, coarsest last
    sizes = [math.prod(calls[n][0][2:]) for n in model.smoe_layers]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    assert len({id(mods[n]) for n in layers}) == len(set(layers))


def test_ba_slab_tiles_are_input_major_and_assemble_back(forwards):
    model, _, _, calls = forwards["ba_slab"]
    t = model.tiling
    assert t.tile_spatial_shape == (121, 145, 6)
    assert calls[model.gradcam_layer][0][0] == 20  # 20 slabs of one input in the batch
    x = torch.arange(2 * 121 * 145 * 121, dtype=torch.float32).reshape(2, 1, 121, 145, 121)
    tiles = t.split(x)
    assert tiles.shape == (40, 1, 121, 145, 6)
    for b, k in [(0, 0), (0, 19), (1, 0), (1, 7)]:
        assert torch.equal(tiles[b * 20 + k], x[b, :, :, :, 6 * k:6 * k + 6])
    maps = torch.arange(20, dtype=torch.float32).reshape(20, 1, 1, 1).expand(20, 121, 145, 6) + 1
    vol = t.assemble(maps)
    assert vol.shape == (121, 145, 121)
    assert vol[5, 7, 13].item() == 3.0  # slice 13 is in slab 2 (slices 12..17)
    assert vol[0, 0, 119].item() == 20.0 and torch.all(vol[..., 120] == 0)
    assert torch.equal(t.assemble(tiles[20:40, 0]), x[1, 0, :, :, :120].new_zeros(121, 145, 121).index_copy(
        2, torch.arange(120), x[1, 0, :, :, :120]))


def test_ba_slab_brain_age_is_the_mean_of_slab_ages_and_slabs_are_local(forwards):
    model, x, y, _ = forwards["ba_slab"]
    sex = torch.ones(1, 1)
    with torch.no_grad():
        slabs = model.forward_slabs(x, sex)
        assert slabs.shape == (1, 20)
        assert torch.allclose(y, slabs.mean(1, keepdim=True))
        x2 = x.clone()
        x2[..., 6 * 3:6 * 3 + 6] = 0  # change slab 3 only
        x2[..., 120] = 5.0  # and the uncovered last slice
        slabs2 = model.forward_slabs(x2, sex)
        other = model.forward_slabs(x, torch.zeros(1, 1))
    changed = (slabs2 - slabs).abs()[0] > 1e-6
    assert changed.tolist() == [k == 3 for k in range(20)]
    assert not torch.allclose(other, slabs)  # sex enters the head
    with pytest.raises(ValueError, match="sex"):
        model(x)


def test_ba3d_without_sex_ignores_it():
    torch.manual_seed(1)
    m = models.build("ba3d", channels=[2, 2], final_channels=2, use_sex=False, volume_shape=[16, 16, 16]).eval()
    x = torch.rand(2, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(m(x), m(x, torch.ones(2, 1)))
    assert not m.takes_sex


def test_sfcn_gives_expected_bin_centre(forwards):
    model, x, y, _ = forwards["sfcn"]
    centres = model.bin_centres
    assert centres[0].item() == pytest.approx(42.5) and centres[-1].item() == pytest.approx(81.5)
    assert len(centres) == 40
    with torch.no_grad():
        logp = model.log_probs(x)
    assert logp.shape == (1, 40)
    assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    expected = sum(math.exp(lp) * (42.5 + i) for i, lp in enumerate(logp[0].tolist()))
    assert y.item() == pytest.approx(expected, abs=1e-3)
    assert 42.5 <= y.item() <= 81.5


def test_sfcn_default_has_the_published_layer_names():
    from napari_bavis.models.sfcn import SFCN

    keys = set(SFCN().state_dict())
    assert len(keys) == 6 * 7 + 2  # 6 blocks x (conv w,b + BN w,b,mean,var,count) + classifier
    for i in range(6):
        assert f"feature_extractor.conv_{i}.0.weight" in keys
        assert f"feature_extractor.conv_{i}.1.running_var" in keys
    assert "classifier.conv_6.weight" in keys and "classifier.conv_6.bias" in keys
    assert SFCN().state_dict()["feature_extractor.conv_1.0.weight"].shape == (64, 32, 3, 3, 3)
    assert set(models.build("sfcn").state_dict()) == keys  # the age wrapper saves the same keys


def test_siamese2d_volume_embedding_is_the_normalised_mean_of_its_slices(forwards):
    model, x, y, calls = forwards["siamese2d"]
    assert calls[model.gradcam_layer][0][0] == 121  # one tile per axial slice
    assert model.tiling.tile_spatial_shape == (121, 145)
    with torch.no_grad():
        per_slice = model(x[0, :, :, :, :].permute(3, 0, 1, 2))  # (121, 1, 121, 145) single slices
    assert per_slice.shape == (121, 128)
    mean = per_slice.mean(0)
    assert torch.allclose(y[0], mean / mean.norm(), atol=1e-5)
    maps = torch.rand(121, 121, 145)
    vol = model.tiling.assemble(maps)
    assert vol.shape == (121, 145, 121) and torch.equal(vol[:, :, 17], maps[17])


@pytest.mark.parametrize("name, kwargs, shape", [
    ("ba_slab", {"width": 2, "blocks": [1, 1, 1, 1], "volume_shape": [32, 32, 13], "n_slabs": 2}, (32, 32, 13)),
    ("ba3d", {"channels": [2, 2], "final_channels": 2}, (16, 16, 16)),
    ("siamese2d", {"width": 2, "blocks": [1, 1, 1, 1], "slice_shape": [32, 32]}, (32, 32, 3)),
    ("siamese3d", {"channels": [4, 4], "final_channels": 8}, (16, 16, 16)),
])
def test_gradients_reach_every_hooked_layer(name, kwargs, shape):
    """What explain needs: one forward with hooks, one autograd.grad to the hooked activations."""
    torch.manual_seed(2)
    model = models.build(name, **kwargs).eval()
    mods = dict(model.named_modules())
    acts = {}
    hooks = [mods[n].register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o))
             for n in model.smoe_layers]
    x = torch.rand(2, 1, *shape)
    # for an encoder, the target is the similarity to a fixed direction (all embedding units count)
    y = model(x, torch.ones(2, 1)) if model.task == "brain_age" else model(x) @ torch.linspace(1, 2, 128)
    grads = torch.autograd.grad(y.sum(), [acts[n] for n in model.smoe_layers])
    for h in hooks:
        h.remove()
    k = getattr(getattr(model, "tiling", None), "n_slabs", shape[-1] if name == "siamese2d" else 1)
    for n, g in zip(model.smoe_layers, grads):
        assert g.shape == acts[n].shape and acts[n].shape[0] == 2 * k
        assert torch.isfinite(g).all()
    assert grads[-1].abs().sum() > 0
