"""The maps are the papers' maps: closed forms, captum's published numbers, a literal transcription, MONAI."""

import copy
import math

import numpy as np
import pytest
import torch
from captum.testing.helpers.basic_models import BasicModel_ConvNet_One_Conv
from explain_nets import (
    SmallCNN,
    capture_reference,
    corr,
    max_normalise,
    randomise_bn,
    ref_gradcam,
    ref_gradcampp,
    ref_normalise,
    ref_smoe_layer,
    upsample,
)
from torch import nn

from napari_bavis.explain import compute_maps, default_layers


class SumHead(nn.Module):
    """score = sum_k v_k * sum_x ReLU(x)_k + bias, so dscore/dA_k = v_k everywhere."""

    def __init__(self, v, bias=0.0):
        super().__init__()
        self.act = nn.ReLU()
        self.register_buffer("v", torch.as_tensor(v, dtype=torch.float32))
        self.bias = bias

    def forward(self, x):
        a = self.act(x)
        return (a.sum(dim=tuple(range(2, a.ndim))) * self.v).sum(1, keepdim=True) + self.bias


@pytest.mark.parametrize("bias", [0.0, 95.0, 1e4])
def test_closed_form_gradcam_and_gradcampp_finite_at_any_score(bias):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 5, 6, 4)
    v = [0.5, -1.0, 2.0]
    maps = compute_maps(SumHead(v, bias), x, ("gradcam", "gradcam++"), layer="act", raw=True)
    a = x[0].double().numpy()
    expected_cam = np.maximum(sum(v[k] * a[k] for k in range(3)), 0)
    positions = a[0].size
    w_pp = [positions * max(v[k], 0) / (2 + a[k].sum() * v[k]) for k in range(3)]
    expected_pp = np.maximum(sum(w_pp[k] * a[k] for k in range(3)), 0)
    np.testing.assert_allclose(maps["gradcam"][0], expected_cam, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps["gradcam++"][0], expected_pp, rtol=1e-5, atol=1e-6)


def test_closed_form_smoe_values():
    # two channels with values (1, 3) at every location: m = 2, SMOE = 2 log 2 - log 3
    x = torch.stack([torch.ones(4, 4), 3 * torch.ones(4, 4)])[None]
    raw = compute_maps(SumHead([1.0, 1.0]), x, "smoe", smoe_layers=["act"], raw=True, smoe_eps=0.0)
    np.testing.assert_allclose(raw["smoe:act"], 2 * math.log(2) - math.log(3), rtol=1e-5)
    # equal channels carry no scale information: SMOE is 0
    same = compute_maps(SumHead([1.0, 1.0]), torch.ones(1, 2, 4, 4), "smoe", smoe_layers=["act"], raw=True)
    np.testing.assert_allclose(same["smoe:act"], 0, atol=1e-6)


@pytest.mark.parametrize("inplace", [False, True])
def test_captum_published_numbers(inplace):
    model = BasicModel_ConvNet_One_Conv(inplace=inplace)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    at_relu = compute_maps(model, x, "gradcam", layer="relu1", target=0, raw=True)["gradcam"]
    np.testing.assert_allclose(at_relu[0], [[0, 4], [28, 32.5]], rtol=1e-6)
    # conv1's output is overwritten by relu1 when inplace=True: the map must not change
    at_conv = compute_maps(model, x, "gradcam", layer="conv1", target=0, raw=True, signed=True)["gradcam"]
    np.testing.assert_allclose(at_conv[0], [[11.25, 13.5], [20.25, 22.5]], rtol=1e-6)
    # resized + normalised map is the raw map's upsampling divided by its maximum
    full = compute_maps(model, x, "gradcam", layer="relu1", target=0)["gradcam"]
    np.testing.assert_allclose(full, max_normalise(upsample(at_relu, (4, 4)))[0], atol=1e-6)


def _random_net(seed, nd=3):
    torch.manual_seed(seed)
    return randomise_bn(SmallCNN(nd=nd, channels=(4, 6, 8)), seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cams_match_transcription_on_random_3d_nets(seed):
    model = _random_net(seed)
    x = torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(seed))
    layer = model.features[2][2]
    a, g, _ = capture_reference(model, (x,), layer)
    ours = compute_maps(model, x, ("gradcam", "gradcam++"), layer=layer)
    for name, ref in (("gradcam", ref_gradcam(a, g)), ("gradcam++", ref_gradcampp(a, g))):
        ref = max_normalise(upsample(ref, (16, 16, 16)))
        assert ref.max() > 0
        assert corr(ours[name], ref) >= 0.999
        np.testing.assert_allclose(ours[name], ref, atol=1e-4)
    # signed maps: the negative part is where the target is pushed down
    signed = compute_maps(model, x, "gradcam", layer=layer, signed=True, raw=True)["gradcam"]
    np.testing.assert_allclose(signed, ref_gradcam(a, g, signed=True), rtol=1e-4, atol=1e-6)


def test_gradcampp_equals_paper_exp_formulation_up_to_scale():
    model = _random_net(3)
    with torch.no_grad():
        model.head.bias.fill_(0.3)
    x = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(3))
    a, g, score = capture_reference(model, (x,), model.features[1][2])
    paper = ref_gradcampp(a, g, score=score)  # with exp(Y): fine at small scores only
    ours = compute_maps(model, x, "gradcam++", layer="features.1.2", raw=True)["gradcam++"]
    assert paper.max() > 0
    np.testing.assert_allclose(ours / ours.max(), paper / paper.max(), atol=1e-5)


@pytest.mark.parametrize("how", ["gaussian", "gamma"])
def test_smoe_matches_transcription(how):
    model = _random_net(4)
    x = torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(4))
    names = ["features.0.2", "features.1.2", "features.2.2"]
    weights = [1.0, 2.0, 0.5]
    ours = compute_maps(model, x, "smoe", smoe_layers=names, smoe_weights=weights, smoe_norm=how)["smoe"]
    combined = 0
    for name, w in zip(names, weights):
        a, _, _ = capture_reference(model, (x,), dict(model.named_modules())[name])
        combined = combined + w * upsample(ref_normalise(ref_smoe_layer(a), how), (16, 16, 16))
    ref = max_normalise(combined / sum(weights))
    assert corr(ours, ref) >= 0.999
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_layer_weights_are_honoured():
    model = _random_net(5)
    x = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(5))
    names = ["features.0.2", "features.2.2"]
    only_first = compute_maps(model, x, "smoe", smoe_layers=names, smoe_weights=[1, 0])["smoe"]
    alone = compute_maps(model, x, "smoe", smoe_layers=names[:1])["smoe"]
    mixed = compute_maps(model, x, "smoe", smoe_layers=names, smoe_weights=[1, 1])["smoe"]
    np.testing.assert_allclose(only_first, alone, atol=1e-6)
    assert np.abs(mixed - alone).max() > 1e-2


def test_products_are_normalised_products():
    model = _random_net(6)
    x = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(6))
    maps = compute_maps(model, x, ("smoe", "gradcam++", "smoe*gradcam++"), layer="features.1.2")
    prod = maps["smoe"] * maps["gradcam++"]
    np.testing.assert_allclose(maps["smoe*gradcam++"], prod / prod.max(), atol=1e-5)


def test_matches_monai_gradcam():
    from monai.visualize import GradCAM

    model = _random_net(7)
    x = torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(7))
    ours = compute_maps(model, x, "gradcam", layer="features.1.2")["gradcam"]
    monai_cam = GradCAM(nn_module=copy.deepcopy(model), target_layers="features.1.2", postprocessing=lambda m: m)
    ref = max_normalise(monai_cam(x, class_idx=0)[:, 0].detach().numpy())
    assert ours.max() > 0
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_2d_net_and_auto_layers():
    torch.manual_seed(8)
    model = randomise_bn(SmallCNN(nd=2, channels=(4, 6, 8)))
    x = torch.randn(1, 1, 20, 24)
    cam_layer, smoe_layers = default_layers(model, x)
    assert cam_layer == "features.2.2"  # last activation reached
    assert smoe_layers == ("features.0.2", "features.1.2", "features.2.2")  # one per resolution
    maps = compute_maps(model, x, ("gradcam", "gradcam++", "smoe", "smoe*gradcam++"))
    explicit = compute_maps(model, x, ("gradcam", "smoe"), layer=cam_layer, smoe_layers=smoe_layers)
    for name, m in maps.items():
        assert m.shape == (20, 24) and m.dtype == np.float32
        assert np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
    np.testing.assert_allclose(maps["gradcam"], explicit["gradcam"], atol=1e-6)
    np.testing.assert_allclose(maps["smoe"], explicit["smoe"], atol=1e-6)


def test_model_attributes_choose_the_layers():
    model = _random_net(9)
    x = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(9))
    model.gradcam_layer = "features.1.2"
    model.smoe_layers = ("features.0.2",)
    by_attr = compute_maps(model, x, ("gradcam", "smoe"))
    explicit = compute_maps(model, x, ("gradcam", "smoe"), layer="features.1.2", smoe_layers=["features.0.2"])
    for k in by_attr:
        np.testing.assert_array_equal(by_attr[k], explicit[k])


def test_smooth_gradcampp_is_the_mean_of_noisy_maps_and_chunking_is_invisible():
    model = _random_net(10)
    x = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(10))
    opts = dict(layer="features.1.2", smooth_n=4, smooth_sigma=0.2)
    one_chunk = compute_maps(model, x, "smooth-gradcam++", smooth_chunk=4, raw=True, **opts)["smooth-gradcam++"]
    chunked = compute_maps(model, x, "smooth-gradcam++", smooth_chunk=3, raw=True, **opts)["smooth-gradcam++"]
    np.testing.assert_allclose(one_chunk, chunked, rtol=1e-4, atol=1e-6)
    clean = compute_maps(model, x, "gradcam++", raw=True, layer="features.1.2")["gradcam++"]
    assert not np.allclose(one_chunk, clean)  # noise did something
    no_noise = compute_maps(model, x, "smooth-gradcam++", raw=True, **{**opts, "smooth_sigma": 0.0})
    np.testing.assert_allclose(no_noise["smooth-gradcam++"], clean, rtol=1e-4, atol=1e-6)


def test_second_model_input_is_passed_and_maps_follow_it():
    torch.manual_seed(11)
    model = randomise_bn(SmallCNN(channels=(4, 6), with_sex=True))
    x = torch.randn(1, 1, 16, 16, 16)
    maps_f = compute_maps(model, (x, torch.zeros(1, 1)), "gradcam")
    maps_m = compute_maps(model, (x, torch.ones(1, 1)), "gradcam")
    # sex enters after the pooled features, so it shifts the score but not the gradient: same map
    np.testing.assert_allclose(maps_f["gradcam"], maps_m["gradcam"], atol=1e-6)
    smooth = compute_maps(model, (x, torch.ones(1, 1)), "smooth-gradcam++", smooth_n=3, smooth_chunk=2)
    assert smooth["smooth-gradcam++"].shape == (16, 16, 16)
