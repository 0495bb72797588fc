"""Siamese per-branch maps and the tiling protocol (slab models, slice encoders)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from explain_nets import SlabNet, SliceEncoder, conv, ref_gradcam, ref_gradcampp, upsample
from torch import nn

from napari_bavis.errors import ExplainError
from napari_bavis.explain import compute_maps, siamese_maps


class Encoder3d(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(conv(3, 1, 4), nn.ReLU(), nn.MaxPool3d(2), conv(3, 4, 6), nn.ReLU())
        self.proj = nn.Linear(6 * 8, 5)
        self.gradcam_layer = "trunk.4"

    def forward(self, x):
        return F.normalize(self.proj(F.adaptive_avg_pool3d(self.trunk(x), 2).flatten(1)), dim=1)


def _reference_branch_maps(encoder, a, b, layer, assemble=None, tile_shape=None):
    """Each branch through its own graph; d cos(mean emb a, mean emb b) / d(that branch's activations)."""
    acts = []

    def hook(module, inp, out):
        out.retain_grad()
        acts.append(out)

    handle = dict(encoder.named_modules())[layer].register_forward_hook(hook)
    encoder.eval()
    ea, eb = encoder(a), encoder(b)
    handle.remove()
    sim = F.cosine_similarity(F.normalize(ea.mean(0), dim=0), F.normalize(eb.mean(0), dim=0), dim=0)
    sim.backward()
    encoder.zero_grad(set_to_none=True)
    out = []
    for act, x in zip(acts, (a, b)):
        A, G = act.detach().double().numpy(), act.grad.double().numpy()
        maps = {}
        for name, fn in (("gradcam", ref_gradcam), ("gradcampp", ref_gradcampp)):
            m = fn(A, G)
            if assemble is None:
                m = upsample(m, x.shape[2:])
            else:
                m = assemble(torch.as_tensor(upsample(m, tile_shape))).numpy()[None]
            maps[name] = m / m.max()
        out.append(maps)
    return out, float(sim)


def test_siamese_branch_maps_and_swap():
    torch.manual_seed(0)
    enc = Encoder3d()
    a = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    b = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    methods = ("gradcam", "gradcam++", "smoe", "smoe*gradcam++")
    maps_a, maps_b, sim = siamese_maps(enc, a, b, methods)
    (ref_a, ref_b), ref_sim = _reference_branch_maps(enc, a, b, "trunk.4")
    assert sim == pytest.approx(ref_sim, abs=1e-6)
    for ours, ref in ((maps_a, ref_a), (maps_b, ref_b)):
        np.testing.assert_allclose(ours["gradcam"], ref["gradcam"][0], atol=1e-5)
        np.testing.assert_allclose(ours["gradcam++"], ref["gradcampp"][0], atol=1e-5)
    assert np.abs(maps_a["gradcam"] - maps_b["gradcam"]).max() > 0.05  # the branches really differ
    swapped_b, swapped_a, sim2 = siamese_maps(enc, b, a, methods)
    assert sim2 == pytest.approx(sim, abs=1e-6)
    for k in methods:
        np.testing.assert_allclose(swapped_a[k], maps_a[k], atol=1e-6)
        np.testing.assert_allclose(swapped_b[k], maps_b[k], atol=1e-6)


def test_siamese_branch_of_several_rows_uses_the_mean_embedding():
    torch.manual_seed(3)
    enc = Encoder3d()
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(2, 1, 16, 16, 16, generator=g), torch.randn(1, 1, 16, 16, 16, generator=g)
    maps_a, maps_b, sim = siamese_maps(enc, a, b, ("gradcam",))
    (ref_a, ref_b), ref_sim = _reference_branch_maps(enc, a, b, "trunk.4")
    assert sim == pytest.approx(ref_sim, abs=1e-6)
    assert maps_a["gradcam"].shape == (2, 16, 16, 16) and maps_b["gradcam"].shape == (16, 16, 16)
    # the branch's rows share one scale: the reference divides both rows by their joint maximum
    np.testing.assert_allclose(maps_a["gradcam"], ref_a["gradcam"], atol=1e-5)
    np.testing.assert_allclose(maps_b["gradcam"], ref_b["gradcam"][0], atol=1e-5)
    assert maps_a["gradcam"][0].max() != maps_a["gradcam"][1].max()


def test_tiled_slab_model_equals_tiles_computed_separately_and_stitched():
    torch.manual_seed(4)
    model = SlabNet()
    x = torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(4))
    ours = compute_maps(model, x, ("gradcam", "gradcam++", "smoe"))
    tiling = model.tiling
    for i in range(2):
        stitched = {"gradcam": [], "gradcampp": []}
        for tile in tiling.cut(x[i : i + 1]):
            store = {}

            def keep(module, inp, out):
                out.retain_grad()
                store["a"] = out

            handle = model.trunk[4].register_forward_hook(keep)
            model.tile_score(tile[None]).sum().backward()
            handle.remove()
            A, G = store["a"].detach().double().numpy(), store["a"].grad.double().numpy()
            stitched["gradcam"].append(upsample(ref_gradcam(A, G), tiling.tile_spatial_shape)[0])
            stitched["gradcampp"].append(upsample(ref_gradcampp(A, G), tiling.tile_spatial_shape)[0])
        model.zero_grad(set_to_none=True)
        for name, key in (("gradcam", "gradcam"), ("gradcam++", "gradcampp")):
            full = np.concatenate(stitched[key], axis=-1)
            assert full.max() > 0
            np.testing.assert_allclose(ours[name][i], full / full.max(), atol=1e-5, err_msg=name)
    assert ours["smoe"].shape == (2, 16, 16, 16) and np.isfinite(ours["smoe"]).all()
    raw = compute_maps(model, x, ("gradcam",), raw=True)["gradcam"]
    assert raw.shape == (2 * tiling.k, 8, 8, 2)  # activation rows: input-major, tile-minor


def test_siamese_with_a_tiled_2d_slice_encoder():
    torch.manual_seed(5)
    enc = SliceEncoder(shape=(16, 16, 6))
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(1, 1, 16, 16, 6, generator=g), torch.randn(1, 1, 16, 16, 6, generator=g)
    maps_a, maps_b, sim = siamese_maps(enc, a, b, ("gradcam", "gradcam++", "smoe"))
    (ref_a, ref_b), ref_sim = _reference_branch_maps(
        enc, a, b, "trunk.4", assemble=enc.tiling.assemble, tile_shape=enc.tiling.tile_spatial_shape
    )
    assert sim == pytest.approx(ref_sim, abs=1e-6)
    for ours, ref in ((maps_a, ref_a), (maps_b, ref_b)):
        assert ours["gradcam"].shape == (16, 16, 6)
        np.testing.assert_allclose(ours["gradcam"], ref["gradcam"][0], atol=1e-5)
        np.testing.assert_allclose(ours["gradcam++"], ref["gradcampp"][0], atol=1e-5)
    swapped_b, swapped_a, _ = siamese_maps(enc, b, a, ("gradcam", "smoe"))
    np.testing.assert_allclose(swapped_a["smoe"], maps_a["smoe"], atol=1e-6)
    np.testing.assert_allclose(swapped_b["gradcam"], maps_b["gradcam"], atol=1e-6)


def test_tiles_without_the_protocol_are_refused():
    model = SlabNet()
    del model.tiling  # instance attribute set in __init__
    model.cut = SlabNet().tiling.cut
    model.forward = lambda x: model.tile_score(model.cut(x)).reshape(x.shape[0], -1).sum(1, keepdim=True)
    with pytest.raises(ExplainError, match=r"batch 4 for 1 input\(s\).*must expose model\.tiling"):
        compute_maps(model, torch.randn(1, 1, 16, 16, 16), "gradcam")


def test_siamese_errors():
    enc = Encoder3d()
    with pytest.raises(ExplainError, match="differ in shape"):
        siamese_maps(enc, torch.randn(1, 1, 16, 16, 16), torch.randn(1, 1, 8, 16, 16))
    with pytest.raises(ExplainError, match="not available for Siamese"):
        siamese_maps(enc, torch.randn(1, 1, 16, 16, 16), torch.randn(1, 1, 16, 16, 16), "smooth-gradcam++")
    with pytest.raises(ExplainError, match=r"one embedding per input, shape \(2, D\)"):
        siamese_maps(nn.Sequential(enc, nn.Flatten(0)), torch.randn(1, 1, 16, 16, 16), torch.randn(1, 1, 16, 16, 16), layer="0.trunk.4")
