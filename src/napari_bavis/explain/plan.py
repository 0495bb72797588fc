"""What a map call asks for, checked once into a :class:`Plan` before any forward pass runs.

Why a module of its own: ``engine`` combines captured activations into maps (which formula, which
resolution, which normalisation); everything here is argument checking (the model, the input, the
method names against the table in ``napari_bavis.methods``, the options and layers) that must fail
with one readable ``ExplainError`` before hooks are placed or a model is moved.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ExplainError
from ..methods import ALL_METHODS as METHODS
from ..methods import PRODUCT_METHODS
from .capture import Request, resolve_layer
from .smoe import NORMALISATIONS


@dataclass
class Plan:
    methods: tuple[str, ...]
    spatial: tuple[int, ...]
    tiling: object
    request_ndims: frozenset[int]
    cam_layer: tuple[str, nn.Module] | None
    smoe_layers: list[tuple[str, nn.Module]] | None
    smoe_weights: tuple[float, ...] | None
    signed: bool
    raw: bool
    smoe_norm: str
    smoe_eps: float
    smooth_n: int
    smooth_sigma: float
    smooth_chunk: int
    smooth_seed: int | None

    def request(self, cam: bool, smoe: bool) -> Request:
        return Request(
            spatial_ndims=self.request_ndims,
            cam_layer=self.cam_layer if cam else None,
            cam_auto=cam and self.cam_layer is None,
            smoe_layers=self.smoe_layers if smoe else None,
            smoe_auto=smoe and self.smoe_layers is None,
            smoe_eps=self.smoe_eps,
        )


def check_methods(methods) -> tuple[str, ...]:
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(dict.fromkeys(methods))
    if not methods:
        raise ExplainError("no method requested; choose from " + ", ".join(METHODS))
    for m in methods:
        if m not in METHODS:
            close = difflib.get_close_matches(str(m), METHODS, n=2)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            raise ExplainError(f"unknown method {m!r}{hint}; choose from {', '.join(METHODS)}")
    return methods


def check_input(x, what: str = "input") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ExplainError(f"the {what} must be a torch tensor, not {type(x).__name__}")
    if x.ndim not in (4, 5):
        raise ExplainError(
            f"the {what} has shape {tuple(x.shape)}; expected (N, C, *spatial) with 2 or 3 spatial axes "
            "(for one 3D scan add batch and channel axes: x[None, None])"
        )
    if not x.is_floating_point():
        raise ExplainError(f"the {what} must be floating point, not {x.dtype}")
    if x.shape[0] < 1:
        raise ExplainError(f"the {what} is an empty batch")
    return x


def model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return fallback


def to_device(a, device):
    if isinstance(a, torch.Tensor):
        a = a.detach()
        if a.is_inference():
            a = a.clone()
        return a.to(device)
    return a


def make_plan(model, x, methods, layer, smoe_layers, smoe_weights, options) -> Plan:
    if not isinstance(model, nn.Module):
        raise ExplainError(f"the model must be a torch.nn.Module, not {type(model).__name__}")
    methods = check_methods(methods)
    signed = bool(options.pop("signed", False))
    raw = bool(options.pop("raw", False))
    smoe_norm = options.pop("smoe_norm", "gaussian")
    smoe_eps = float(options.pop("smoe_eps", 1e-7))
    smooth_n = int(options.pop("smooth_n", 8))
    smooth_sigma = float(options.pop("smooth_sigma", 0.15))
    smooth_chunk = int(options.pop("smooth_chunk", 4))
    smooth_seed = options.pop("smooth_seed", 0)
    if options:
        raise ExplainError(f"unknown option(s): {', '.join(sorted(options))}")
    if smoe_norm not in NORMALISATIONS:
        raise ExplainError(f"smoe_norm must be one of {', '.join(NORMALISATIONS)}, not {smoe_norm!r}")
    if smooth_n < 1 or smooth_chunk < 1 or not smooth_sigma >= 0:
        raise ExplainError("smooth_n and smooth_chunk must be >= 1 and smooth_sigma >= 0")
    if raw and any(m in PRODUCT_METHODS for m in methods):
        raise ExplainError("products of SMOE and CAM maps exist only at the input's resolution; drop raw=True")

    if layer is None:
        layer = getattr(model, "gradcam_layer", None)
    cam_layer = resolve_layer(model, layer) if layer is not None else None
    if smoe_layers is None:
        smoe_layers = getattr(model, "smoe_layers", None)
    if smoe_layers is not None:
        if isinstance(smoe_layers, (str, nn.Module)):
            smoe_layers = (smoe_layers,)
        resolved = [resolve_layer(model, s) for s in smoe_layers]
        smoe_layers = list({name: (name, m) for name, m in resolved}.values())
        if not smoe_layers:
            raise ExplainError("smoe_layers is empty")
    if smoe_weights is not None:
        smoe_weights = tuple(float(w) for w in smoe_weights)
        if not all(np.isfinite(w) and w >= 0 for w in smoe_weights) or sum(smoe_weights) <= 0:
            raise ExplainError("smoe_weights must be finite, non-negative and not all zero")
        if smoe_layers is not None and len(smoe_weights) != len(smoe_layers):
            raise ExplainError(f"{len(smoe_weights)} smoe_weights for {len(smoe_layers)} SMOE layers")

    tiling = getattr(model, "tiling", None)
    ndims = {x.ndim}
    if tiling is not None:
        ndims.add(len(tuple(tiling.tile_spatial_shape)) + 2)
    return Plan(
        methods=methods, spatial=tuple(x.shape[2:]), tiling=tiling, request_ndims=frozenset(ndims),
        cam_layer=cam_layer, smoe_layers=smoe_layers, smoe_weights=smoe_weights, signed=signed, raw=raw,
        smoe_norm=smoe_norm, smoe_eps=smoe_eps, smooth_n=smooth_n, smooth_sigma=smooth_sigma,
        smooth_chunk=smooth_chunk, smooth_seed=smooth_seed,
    )  # fmt: skip


def split_inputs(inputs) -> tuple:
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    if isinstance(inputs, (tuple, list)) and inputs:
        return tuple(inputs)
    raise ExplainError(f"inputs must be a tensor or a non-empty tuple of model arguments, not {type(inputs).__name__}")
