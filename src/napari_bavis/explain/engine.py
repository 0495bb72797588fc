"""compute_maps / siamese_maps: every requested map from one forward and one gradient.

The arguments are checked into a :class:`~.plan.Plan` first (``plan.py``), the pass itself is
``capture.run_pass``; this module turns what one pass captured into the requested maps: the formula
for each name of the method table (``CAM_FORMULAS``), SMOE's layer combination, products, tiles and
resolution, and the final scaling.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ExplainError
from ..methods import BY_NAME, CAM_METHODS, GRADCAM, GRADCAMPP, SIAMESE_METHODS, SMOE, SMOE_METHODS
from . import cams
from .capture import Request, eval_mode, last_of_each_resolution, no_autocast, run_pass
from .plan import Plan, check_input, check_methods, make_plan, model_device, split_inputs, to_device
from .smoe import normalise_layer
from .targets import ScoreFn, cosine_target, per_input_target

#: Layer-resolution formulas from the Grad-CAM layer's activation and gradient, keyed by the table's names.
CAM_FORMULAS: dict[str, Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]] = {
    GRADCAM: cams.gradcam,
    GRADCAMPP: cams.gradcampp,
}
#: What compute_maps and siamese_maps compute when called without ``methods``.
_CALL_DEFAULT = (GRADCAM, GRADCAMPP, SMOE)

_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def resize(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, *s) -> (B, *size) by (bi/tri)linear interpolation, align_corners=False."""
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[1:]) == size:
        return maps
    if maps.ndim - 1 != len(size) or len(size) not in _MODES:
        raise ExplainError(f"cannot resize a map of shape {tuple(maps.shape[1:])} to {size}")
    return F.interpolate(maps[:, None], size=size, mode=_MODES[len(size)], align_corners=False)[:, 0]


def _to_input(rows: torch.Tensor, n: int, plan: Plan, what: str) -> torch.Tensor:
    """Layer-resolution rows (B_act, *s) -> one map per input (n, *input spatial), assembling tiles."""
    b = rows.shape[0]
    if b == n:
        if rows.ndim - 1 != len(plan.spatial):
            raise ExplainError(f"{what} has {rows.ndim - 1} spatial axes, the input {len(plan.spatial)}")
        return resize(rows, plan.spatial)
    if plan.tiling is None or b % n:
        raise ExplainError(
            f"{what} has batch {b} for {n} input(s); a model that cuts its input into tiles must expose model.tiling"
        )
    k = b // n
    tile_shape = tuple(int(s) for s in plan.tiling.tile_spatial_shape)
    tiles = resize(rows, tile_shape).reshape(n, k, *tile_shape)
    maps = []
    for i in range(n):
        m = torch.as_tensor(plan.tiling.assemble(tiles[i]), dtype=torch.float32, device=rows.device)
        if tuple(m.shape) != plan.spatial:
            raise ExplainError(f"model.tiling.assemble returned shape {tuple(m.shape)}, not the input's {plan.spatial}")
        maps.append(m)
    return torch.stack(maps)


def _smooth_noise(shape, seed: int, copy: int) -> torch.Tensor:
    # Copy j of every input uses the same draw, so a batch gives the same maps as single calls.
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + copy))


def _smooth_cam(model, args, n, plan: Plan, target, formula) -> torch.Tensor:
    """Mean ``formula`` map (Grad-CAM++ for Smooth Grad-CAM++) over ``smooth_n`` noisy copies per input,
    ``smooth_chunk`` copies per forward."""
    x = args[0]
    dims = tuple(range(1, x.ndim))
    sigma = plan.smooth_sigma * (x.amax(dim=dims) - x.amin(dim=dims)).float()
    seed = plan.smooth_seed if plan.smooth_seed is not None else random.SystemRandom().randrange(2**31)
    pairs = [(i, j) for i in range(n) for j in range(plan.smooth_n)]
    request = plan.request(cam=True, smoe=False)
    total = None
    for start in range(0, len(pairs), plan.smooth_chunk):
        part = pairs[start : start + plan.smooth_chunk]
        c = len(part)
        idx = torch.tensor([i for i, _ in part], device=x.device)
        noise = torch.stack([_smooth_noise(x.shape[1:], seed, j) for _, j in part]).to(x.device, x.dtype)
        xb = x.index_select(0, idx) + noise * sigma.index_select(0, idx).to(x.dtype).reshape(-1, *[1] * (x.ndim - 1))
        rest = tuple(
            a.index_select(0, idx) if isinstance(a, torch.Tensor) and a.ndim and a.shape[0] == n else a
            for a in args[1:]
        )
        cap = run_pass(model, (xb, *rest), request, per_input_target(target, c))
        with no_autocast(x.device):
            m = formula(cap.activation.float(), cap.gradient.float(), plan.signed)
        if m.shape[0] % c:
            raise ExplainError(f"layer {cap.cam_name!r} has batch {m.shape[0]} for {c} inputs")
        m = m.reshape(c, m.shape[0] // c, *m.shape[1:])
        if total is None:
            total = torch.zeros((n, *m.shape[1:]), dtype=torch.float32, device=m.device)
        total.index_add_(0, idx, m)
    total /= plan.smooth_n
    return total.reshape(-1, *total.shape[2:])


def _explain(model, args, n, plan: Plan, score_fn: ScoreFn, target, need_values: bool = False):
    """Un-normalised maps: raw layer rows if ``plan.raw``, else (n, *spatial) per method; plus target values."""
    methods = plan.methods
    need_cam = any(m in CAM_METHODS for m in methods)
    need_smoe = any(m in SMOE_METHODS for m in methods)
    # the one-pass CAM maps: those asked for and the factors of the products asked for
    wanted = set(methods).union(*(BY_NAME[m].factors or () for m in methods))
    rows: dict[str, torch.Tensor] = {}
    smoe_rows: list[tuple[str, torch.Tensor]] = []
    values = None
    cam_name = plan.cam_layer[0] if plan.cam_layer else "the Grad-CAM layer"
    device = args[0].device
    if need_cam or need_smoe or need_values:
        # SMOE alone needs no target: a multi-output model is fine for it
        cap = run_pass(model, args, plan.request(need_cam, need_smoe), score_fn if need_cam or need_values else None)
        values = cap.values
        smoe_rows = cap.smoe
        if need_cam:
            cam_name = cap.cam_name
            with no_autocast(device):
                a, g = cap.activation.float(), cap.gradient.float()
                for name, formula in CAM_FORMULAS.items():
                    if name in wanted:
                        rows[name] = formula(a, g, plan.signed)
            del a, g, cap
    for m in methods:
        if BY_NAME[m].smoothed:
            rows[m] = _smooth_cam(model, args, n, plan, target, CAM_FORMULAS[BY_NAME[m].smoothed])

    weights = plan.smoe_weights
    if need_smoe and weights is not None and len(weights) != len(smoe_rows):
        names = ", ".join(name for name, _ in smoe_rows)
        raise ExplainError(f"{len(weights)} smoe_weights for {len(smoe_rows)} SMOE layers ({names})")

    if plan.raw:
        out = {m: rows[m] for m in methods if m in rows}
        if need_smoe:
            out.update({f"{SMOE}:{name}": r for name, r in smoe_rows})
        return out, values

    with no_autocast(device):
        full = {m: _to_input(r, n, plan, f"layer {cam_name!r}") for m, r in rows.items()}
        if need_smoe:
            weights = weights or (1.0,) * len(smoe_rows)
            combined = None
            for (name, r), w in zip(smoe_rows, weights, strict=True):
                if w == 0:
                    continue
                normed = normalise_layer(r.reshape(n, -1), plan.smoe_norm, plan.smoe_eps).reshape(r.shape)
                layer_map = _to_input(normed, n, plan, f"SMOE layer {name!r}")
                if combined is None:
                    combined = layer_map * w
                else:
                    combined.add_(layer_map, alpha=w)
            full[SMOE] = combined.div_(sum(weights))
            for m in methods:
                if BY_NAME[m].factors:
                    first, second = BY_NAME[m].factors
                    full[m] = full[first] * full[second]
    return {m: full[m] for m in methods}, values


def _normalise(maps: torch.Tensor, groups: list[slice], signed: bool, method: str) -> torch.Tensor:
    """Scale each group of rows by its maximum (|.| if signed) to [0, 1] or [-1, 1], in place; zero maps stay zero."""
    for g in groups:
        part = maps[g]
        low, high = torch.aminmax(part)
        if not (torch.isfinite(low) and torch.isfinite(high)):  # NaN propagates into min/max
            raise ExplainError(f"the {method} map is not finite: the model produced NaN or infinite values")
        scale = torch.maximum(high, -low) if signed else high
        if scale > 0:
            part.div_(scale)
        else:
            part.zero_()
    return maps


def _finish(maps: dict[str, torch.Tensor], groups, signed, squeeze: bool, normalise=True) -> dict[str, np.ndarray]:
    result = {}
    for method, m in maps.items():
        if normalise:
            m = _normalise(m, groups, signed and BY_NAME[method].cam, method)
        arr = m.detach().to("cpu", torch.float32).numpy()
        result[method] = arr[0] if squeeze else arr
    return result


def compute_maps(
    model: nn.Module,
    inputs,
    methods: Sequence[str] | str = _CALL_DEFAULT,
    layer: str | nn.Module | None = None,
    smoe_layers: Sequence[str | nn.Module] | None = None,
    smoe_weights: Sequence[float] | None = None,
    target: None | int | Callable = None,
    **options,
) -> dict[str, np.ndarray]:
    """Explanation maps for the first input tensor; see docs/explain.md for methods and options."""
    args = split_inputs(inputs)
    x = check_input(args[0])
    plan = make_plan(model, x, methods, layer, smoe_layers, smoe_weights, dict(options))
    device = model_device(model, x.device)
    n = x.shape[0]
    with torch.inference_mode(False):
        args = tuple(to_device(a, device) for a in args)
        with eval_mode(model):
            maps, _ = _explain(model, args, n, plan, per_input_target(target, n), target)
        if plan.raw:
            return {k: v.detach().to("cpu", torch.float32).numpy() for k, v in maps.items()}
        return _finish(maps, [slice(i, i + 1) for i in range(n)], plan.signed, squeeze=n == 1)


def siamese_maps(
    encoder: nn.Module,
    a: torch.Tensor,
    b: torch.Tensor,
    methods: Sequence[str] | str = _CALL_DEFAULT,
    layer: str | nn.Module | None = None,
    smoe_layers: Sequence[str | nn.Module] | None = None,
    smoe_weights: Sequence[float] | None = None,
    **options,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float]:
    """Per-branch maps explaining the cosine similarity of ``encoder(a)`` and ``encoder(b)``.

    a and b run as one batch (eval mode: rows are independent), so each branch's map comes from
    its own activations and gradients, and swapping a and b swaps the maps.
    """
    a, b = check_input(a, "first input"), check_input(b, "second input")
    if a.shape[1:] != b.shape[1:]:
        raise ExplainError(f"the two inputs differ in shape: {tuple(a.shape[1:])} vs {tuple(b.shape[1:])}")
    unavailable = [m for m in check_methods(methods) if m not in SIAMESE_METHODS]
    if unavailable:
        raise ExplainError(f"{', '.join(repr(m) for m in unavailable)} not available for Siamese maps")
    na, nb = a.shape[0], b.shape[0]
    x = torch.cat([a.detach(), b.detach().to(a.device, a.dtype)])
    plan = make_plan(encoder, x, methods, layer, smoe_layers, smoe_weights, dict(options))
    device = model_device(encoder, x.device)
    with torch.inference_mode(False):
        x = to_device(x, device)
        with eval_mode(encoder):
            maps, values = _explain(encoder, (x,), na + nb, plan, cosine_target(na, nb), None, need_values=True)
        similarity = float(values[0])
        if plan.raw:
            out_a, out_b = {}, {}
            for k, v in maps.items():
                per = v.shape[0] // (na + nb)
                out_a[k] = v[: na * per].detach().cpu().numpy()
                out_b[k] = v[na * per :].detach().cpu().numpy()
            return out_a, out_b, similarity
        both = {}
        for k, v in maps.items():
            both[k] = _normalise(v, [slice(0, na), slice(na, na + nb)], plan.signed and BY_NAME[k].cam, k)
        maps_a = _finish({k: v[:na] for k, v in both.items()}, None, None, squeeze=na == 1, normalise=False)
        maps_b = _finish({k: v[na:] for k, v in both.items()}, None, None, squeeze=nb == 1, normalise=False)
        return maps_a, maps_b, similarity


def default_layers(model: nn.Module, inputs) -> tuple[str, tuple[str, ...]]:
    """(Grad-CAM layer, SMOE layers) that compute_maps uses when none are given (runs one no-grad forward)."""
    args = split_inputs(inputs)
    x = check_input(args[0])
    plan = make_plan(model, x, (GRADCAM,), None, None, None, {})
    cam = plan.cam_layer[0] if plan.cam_layer else None
    smoe = tuple(name for name, _ in plan.smoe_layers) if plan.smoe_layers else None
    if cam is None or smoe is None:
        device = model_device(model, x.device)
        with torch.inference_mode(False):
            args = tuple(to_device(a, device) for a in args)
            request = Request(spatial_ndims=plan.request_ndims, record_events=True)
            with eval_mode(model):
                events = run_pass(model, args, request, None).events
        if not events:
            raise ExplainError("no activation layer with spatial output was reached")
        cam = cam or events[-1][0]
        smoe = smoe or tuple(events[i][0] for i in last_of_each_resolution(events))
    return cam, smoe
