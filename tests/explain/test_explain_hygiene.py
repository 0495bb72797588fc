"""The model comes back exactly as it was; calls share nothing; bad requests fail with one clear line."""

import copy
import gc
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from explain_nets import SmallCNN, capture_reference, randomise_bn, ref_gradcam, upsample
from torch import nn

from napari_bavis.errors import ExplainError
from napari_bavis.explain import compute_maps

ALL = ("gradcam", "gradcam++", "smooth-gradcam++", "smoe", "smoe*gradcam++", "smoe*gradcam")
FAST = dict(smooth_n=2, smooth_chunk=2)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return randomise_bn(SmallCNN(channels=(4, 6, 8)))


@pytest.fixture
def x():
    return torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))


def _hook_count(model):
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


def test_modes_stats_grads_and_user_hooks_are_untouched(model, x):
    model.train()
    model.features[1].eval()  # a mixed state must come back as it was
    flags = {name: m.training for name, m in model.named_modules()}
    state = copy.deepcopy(model.state_dict())
    calls = []
    model.features[2].register_forward_hook(lambda *a: calls.append("fwd"))
    model.features[0].register_forward_pre_hook(lambda *a: calls.append("pre"))
    hooks_before = _hook_count(model)
    x_before = x.clone()

    maps = compute_maps(model, x, ("gradcam", "gradcam++", "smoe"), layer="features.1.2")

    assert calls == ["pre", "fwd"]  # one forward served all three methods; user hooks still fire
    assert _hook_count(model) == hooks_before
    assert {name: m.training for name, m in model.named_modules()} == flags
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # BatchNorm running stats and counters unchanged
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None
    # eval-mode maps: the same as from a model that was in eval mode all along
    ref = compute_maps(copy.deepcopy(model).eval(), x, ("gradcam",), layer="features.1.2")
    np.testing.assert_array_equal(maps["gradcam"], ref["gradcam"])


def test_hooks_removed_and_mode_restored_when_the_model_raises(model, x):
    model.train()

    def boom(module, args, output):
        raise RuntimeError("model failure")

    handle = model.head.register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="model failure"):
        compute_maps(model, x, ALL, **FAST)
    handle.remove()
    assert _hook_count(model) == 0
    assert all(m.training for m in model.modules())
    assert torch.is_grad_enabled()


def test_frozen_model_and_caller_no_grad(model, x):
    for p in model.parameters():
        p.requires_grad_(False)
    ref = compute_maps(model, x, "gradcam++", layer="features.2.2")
    with torch.no_grad():
        inside = compute_maps(model, x, "gradcam++", layer="features.2.2")
    with torch.inference_mode():
        inference = compute_maps(model, x, "gradcam++", layer="features.2.2")
    assert torch.is_grad_enabled()
    assert ref["gradcam++"].max() == 1
    np.testing.assert_array_equal(ref["gradcam++"], inside["gradcam++"])
    np.testing.assert_array_equal(ref["gradcam++"], inference["gradcam++"])
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


class Residual3d(nn.Module):
    """A residual block whose BN output is changed in place (``+=``, in-place ReLU) after its hook ran."""

    def __init__(self, inplace):
        super().__init__()
        self.inplace = inplace
        self.conv1, self.bn1 = nn.Conv3d(4, 4, 3, padding=1), nn.BatchNorm3d(4)
        self.conv2, self.bn2 = nn.Conv3d(4, 4, 3, padding=1), nn.BatchNorm3d(4)
        self.relu = nn.ReLU(inplace=inplace)  # shared: called twice, like torchvision's BasicBlock

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(out))
        if self.inplace:
            y += x
        else:
            y = y + x
        return self.relu(y)


class ResNetToy(nn.Module):
    def __init__(self, inplace):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(inplace=inplace))
        self.block = Residual3d(inplace)
        self.head = nn.Linear(4 * 8, 1)

    def forward(self, x):
        return self.head(nn.functional.adaptive_avg_pool3d(self.block(self.stem(x)), 2).flatten(1))


def test_inplace_relu_and_inplace_ops_after_the_layer(x):
    torch.manual_seed(1)
    plain = randomise_bn(ResNetToy(inplace=False))
    inplace = ResNetToy(inplace=True)
    inplace.load_state_dict(plain.state_dict())
    for layer in ("stem.0", "stem.1", "block.bn2", "block.relu"):
        a = compute_maps(plain, x, ("gradcam", "gradcam++", "smoe"), layer=layer, smoe_layers=[layer], signed=True)
        b = compute_maps(inplace, x, ("gradcam", "gradcam++", "smoe"), layer=layer, smoe_layers=[layer], signed=True)
        for k in a:
            assert np.abs(a[k]).max() > 0
            np.testing.assert_allclose(a[k], b[k], atol=1e-5, err_msg=f"{layer} {k}")
        ref_a, ref_g, _ = capture_reference(plain, (x,), dict(plain.named_modules())[layer])
        ref = ref_gradcam(ref_a, ref_g, signed=True)
        ref = upsample(ref, (16, 16, 16))[0]
        np.testing.assert_allclose(b["gradcam"], ref / np.abs(ref).max(), atol=1e-5, err_msg=layer)


def test_batch_equals_single_calls(model):
    xs = torch.randn(3, 1, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    batch = compute_maps(model, xs, ALL, layer="features.1.2", **FAST)
    for i in range(3):
        single = compute_maps(model, xs[i : i + 1], ALL, layer="features.1.2", **FAST)
        for k in ALL:
            assert batch[k].shape == (3, 16, 16, 16) and single[k].shape == (16, 16, 16)
            np.testing.assert_allclose(batch[k][i], single[k], atol=1e-5, err_msg=k)


def test_worker_threads_give_the_main_thread_maps(model, x):
    expected = compute_maps(model, x, ALL, **FAST)
    twin = copy.deepcopy(model)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(compute_maps, m, x, ALL, **FAST) for m in (model, twin)]
        results = [f.result() for f in futures]
    for r in results:
        for k in ALL:
            np.testing.assert_allclose(r[k], expected[k], atol=1e-6)


def test_hooks_ignore_forwards_from_other_threads(model, x):
    """A forward of the same model in another thread, mid-call, must not land in our maps."""
    other = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(9))
    expected = compute_maps(model, x, ("gradcam", "smoe"), layer="features.1.2")
    started = threading.Event()

    def intruder(module, args, output):
        if threading.current_thread() is threading.main_thread() and not started.is_set():
            started.set()
            t = threading.Thread(target=lambda: model(other))
            t.start()
            t.join()

    handle = model.features[0].register_forward_hook(intruder)
    try:
        got = compute_maps(model, x, ("gradcam", "smoe"), layer="features.1.2")
    finally:
        handle.remove()
    assert started.is_set()
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], atol=1e-6)


def test_no_growth_over_many_calls(model, x):
    compute_maps(model, x, ALL, **FAST)
    gc.collect()
    tensors_before = sum(isinstance(o, torch.Tensor) for o in gc.get_objects())
    for _ in range(25):
        compute_maps(model, x, ALL, **FAST)
    gc.collect()
    tensors_after = sum(isinstance(o, torch.Tensor) for o in gc.get_objects())
    assert _hook_count(model) == 0
    assert tensors_after <= tensors_before


def test_float32_maps_under_autocast(model, x):
    ref = compute_maps(model, x, ("gradcam++", "smoe"), layer="features.1.2")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = compute_maps(model, x, ("gradcam++", "smoe"), layer="features.1.2")
    for k in ref:
        assert low[k].dtype == np.float32 and np.isfinite(low[k]).all()
        assert np.corrcoef(low[k].ravel(), ref[k].ravel())[0, 1] > 0.95


def test_all_zero_map_stays_zero_never_nan(x):
    class Dead(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(1, 2, 3, padding=1)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.conv(x) * 0 - 1).sum(dim=(1, 2, 3, 4))[:, None]

    maps = compute_maps(Dead(), x, ("gradcam", "gradcam++", "smoe", "smoe*gradcam"), layer="act")
    for k, m in maps.items():
        assert np.isfinite(m).all(), k
    assert maps["gradcam"].max() == 0 and maps["gradcam++"].max() == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(layer="features.1.9"), r"'features\.1\.9' is not a module.*close names: 'features\.1\.\d'"),
        (dict(layer="featrues.2.2"), r"close names: 'features\.2\.2'"),
        (dict(target=lambda out: out.repeat(1, 2)), r"target must be a scalar, got shape \(1, 2\)"),
        (dict(target="age"), r"target must be None, an output index or a callable, not str"),
        (dict(layer="unused"), r"'unused' was not reached by the forward pass"),
        (dict(layer="head"), r"'head' outputs shape \(1, 1\), which has no spatial axes"),
        (dict(methods=("gradcam+",)), r"unknown method 'gradcam\+'.*did you mean 'gradcam\+\+'"),
        (dict(methods="smoe", smoe_layers=["features.0.2"], smoe_weights=[1, 2]), r"2 smoe_weights for 1 SMOE"),
        (dict(smoe_norm="beta", methods="smoe"), r"smoe_norm must be one of gaussian, gamma"),
        (dict(colour=True), r"unknown option\(s\): colour"),
    ],
)
def test_clear_one_line_errors(model, x, kwargs, message):
    model.unused = nn.ReLU()
    kwargs = {"methods": ("gradcam",), **kwargs}
    with pytest.raises(ExplainError, match=message) as info:
        compute_maps(model, x, **kwargs)
    assert "\n" not in str(info.value)
    assert _hook_count(model) == 0


@pytest.mark.parametrize("shape", [(16, 16, 16), (1, 16, 16, 16, 16, 1), (16,)])
def test_wrong_input_ndim(model, shape):
    with pytest.raises(ExplainError, match=r"expected \(N, C, \*spatial\) with 2 or 3 spatial axes"):
        compute_maps(model, torch.zeros(shape))


def test_batch_target_needs_one_value_per_input(model):
    xs = torch.randn(2, 1, 16, 16, 16)
    with pytest.raises(ExplainError, match=r"one scalar per input \(2\), got shape \(\)"):
        compute_maps(model, xs, "gradcam", target=lambda out: out.sum())
    with pytest.raises(ExplainError, match=r"2 outputs per input"):
        compute_maps(nn.Sequential(model, nn.Linear(1, 2)), xs, "gradcam", layer="0.features.2.2")


def test_smoe_alone_needs_no_scalar_target(model, x):
    two_outputs = nn.Sequential(model, nn.Linear(1, 2))
    smoe = compute_maps(two_outputs, x, "smoe", smoe_layers=["0.features.0.2"])["smoe"]
    ref = compute_maps(model, x, "smoe", smoe_layers=["features.0.2"])["smoe"]
    np.testing.assert_array_equal(smoe, ref)


def test_layer_the_target_ignores(x):
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU())
            self.b = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU())

        def forward(self, x):
            self.b(x)
            return self.a(x).mean(dim=(1, 2, 3, 4))[:, None]

    with pytest.raises(ExplainError, match=r"the target does not depend on layer 'b\.1'"):
        compute_maps(TwoHeads(), x, "gradcam", layer="b.1")
