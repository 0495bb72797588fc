"""One forward pass with temporary hooks, and one gradient to the Grad-CAM layer only.

How the pass stays cheap and safe:
- the forward runs under ``no_grad`` until the Grad-CAM layer fires; its hook replaces the layer's
  output by a copy of a fresh leaf tensor and switches gradients on for the rest of the forward.
  So no autograd graph is built (or kept in memory) below that layer, the gradient stops at it,
  and no parameter ever receives ``.grad``; ``∂score/∂A`` is unchanged because it only depends
  on what happens after A.
- the copy handed downstream means in-place operations after the layer (``ReLU(inplace=True)``,
  ``out += identity``) cannot alter the saved activations;
- SMOE layers are reduced over channels inside their hook, so only ``(B, *spatial)`` is kept;
- hooks ignore calls from other threads and are removed in ``finally``; module train/eval flags
  are restored one by one.
A module called several times in one forward (a shared ``self.relu``) contributes its last call.
"""

from __future__ import annotations

import contextlib
import difflib
import threading
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ExplainError
from .smoe import smoe_scale
from .targets import ScoreFn

#: Modules treated as "activations" when layers are found automatically.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU,
    nn.GELU, nn.SiLU, nn.Mish, nn.Softplus, nn.Hardswish,
)  # fmt: skip
#: What a hooked module is for (layer roles, not map names): the Grad-CAM layer, a SMOE layer.
_CAM_ROLE, _SMOE_ROLE = "cam layer", "smoe layer"


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """(dotted name, module) for a name or a module of ``model``; unknown names list close ones."""
    modules = dict(model.named_modules())
    if isinstance(layer, str):
        if layer in modules:
            return layer, modules[layer]
        close = difflib.get_close_matches(layer, [n for n in modules if n], n=5, cutoff=0.5)
        hint = (
            f"; close names: {', '.join(repr(c) for c in close)}"
            if close
            else "; see dict(model.named_modules()) for the names"
        )
        raise ExplainError(f"layer {layer!r} is not a module of this model{hint}")
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer:
                return name, module
        raise ExplainError(f"the layer module {type(layer).__name__} is not part of this model")
    raise ExplainError(f"a layer must be a module or its dotted name, not {type(layer).__name__}")


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Explain in eval mode (BatchNorm statistics untouched, dropout off); restore every module's own flag."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def no_autocast(device: torch.device):
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except (RuntimeError, ValueError):  # a device type autocast does not know
        return contextlib.nullcontext()


@dataclass
class Request:
    """Which layers one pass captures; ``*_auto`` means 'find them from the forward pass'."""

    spatial_ndims: frozenset[int]
    cam_layer: tuple[str, nn.Module] | None = None
    cam_auto: bool = False
    smoe_layers: list[tuple[str, nn.Module]] | None = None
    smoe_auto: bool = False
    record_events: bool = False
    smoe_eps: float = 1e-7

    @property
    def wants_cam(self) -> bool:
        return self.cam_auto or self.cam_layer is not None

    @property
    def wants_smoe(self) -> bool:
        return self.smoe_auto or bool(self.smoe_layers)

    @property
    def any_auto(self) -> bool:
        return self.cam_auto or self.smoe_auto or self.record_events


@dataclass
class Captured:
    output: object
    values: torch.Tensor | None = None
    cam_name: str | None = None
    activation: torch.Tensor | None = None  # (B_act, C, *spatial), detached
    gradient: torch.Tensor | None = None  # same shape
    smoe: list[tuple[str, torch.Tensor]] = field(default_factory=list)  # (name, (B_act, *spatial) float32)
    events: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)


class _Hooks:
    """Per-call recorder; holds no reference to anything once the call returns."""

    def __init__(self, request: Request):
        self.request = request
        self.thread = threading.get_ident()
        self.cam: tuple[str, torch.Tensor] | None = None
        self.smoe_by_name: dict[str, torch.Tensor] = {}
        self.events: list[tuple[str, tuple[int, ...], torch.Tensor | None]] = []
        self.reached: set[str] = set()
        self.problems: dict[str, str] = {}

    def make(self, name: str, roles: frozenset[str]):
        request = self.request

        def hook(module, args, output):
            if threading.get_ident() != self.thread:
                return None
            self.reached.add(name)
            explicit = _CAM_ROLE in roles or _SMOE_ROLE in roles
            if not isinstance(output, torch.Tensor):
                if explicit:
                    self.problems[name] = f"returns {type(output).__name__}, not a tensor"
                return None
            if output.ndim not in request.spatial_ndims:
                if explicit:
                    self.problems[name] = (
                        f"outputs shape {tuple(output.shape)}, which has no spatial axes like the input's"
                    )
                return None
            candidate = "candidate" in roles
            smoe_map = None
            if _SMOE_ROLE in roles or (candidate and request.smoe_auto):
                with torch.no_grad(), no_autocast(output.device):
                    smoe_map = smoe_scale(output.detach(), request.smoe_eps)
                if _SMOE_ROLE in roles:
                    self.smoe_by_name[name] = smoe_map
            if candidate:
                self.events.append((name, tuple(output.shape[2:]), smoe_map if request.smoe_auto else None))
            if _CAM_ROLE in roles or (candidate and request.cam_auto):
                leaf = output.detach().clone()
                torch.set_grad_enabled(True)  # undone by the no_grad block around the forward
                leaf.requires_grad_(True)
                self.cam = (name, leaf)
                return leaf.clone()
            return None

        return hook


def _plan_hooks(model: nn.Module, request: Request) -> list[tuple[str, nn.Module, frozenset[str]]]:
    roles: dict[str, set[str]] = {}
    modules: dict[str, nn.Module] = {}
    if request.cam_layer is not None:
        name, module = request.cam_layer
        roles.setdefault(name, set()).add(_CAM_ROLE)
        modules[name] = module
    for name, module in request.smoe_layers or ():
        roles.setdefault(name, set()).add(_SMOE_ROLE)
        modules[name] = module
    if request.any_auto:
        for name, module in model.named_modules():
            if isinstance(module, ACTIVATION_TYPES):
                roles.setdefault(name, set()).add("candidate")
                modules[name] = module
    return [(name, modules[name], frozenset(r)) for name, r in roles.items()]


def _missing(name: str, hooks: _Hooks) -> ExplainError:
    if name in hooks.problems:
        return ExplainError(f"layer {name!r} {hooks.problems[name]}; choose a convolutional layer")
    return ExplainError(f"layer {name!r} was not reached by the forward pass")


def last_of_each_resolution(events: list) -> list[int]:
    """Indices of the last event before each change of spatial shape (one per resolution stage)."""
    chosen = [i for i in range(len(events)) if i + 1 == len(events) or events[i + 1][1] != events[i][1]]
    seen: dict[str, int] = {}
    for i in chosen:  # a shared module chosen twice counts once, at its last use
        seen[events[i][0]] = i
    return sorted(seen.values())


def run_pass(model: nn.Module, args: tuple, request: Request, score_fn: ScoreFn | None) -> Captured:
    """One forward with hooks, then (if Grad-CAM is wanted) one ``autograd.grad`` to its layer's output."""
    hooks = _Hooks(request)
    handles = []
    try:
        for name, module, roles in _plan_hooks(model, request):
            handles.append(module.register_forward_hook(hooks.make(name, roles)))
        with torch.no_grad():
            output = model(*args)
    finally:
        for handle in handles:
            handle.remove()

    captured = Captured(output=output, events=[(n, s) for n, s, _ in hooks.events])
    if request.smoe_layers:
        for name, _ in request.smoe_layers:
            if name not in hooks.smoe_by_name:
                raise _missing(name, hooks)
            captured.smoe.append((name, hooks.smoe_by_name[name]))
    elif request.smoe_auto:
        chosen = last_of_each_resolution(hooks.events)
        if not chosen:
            raise ExplainError("no activation layer with spatial output was reached; pass smoe_layers=[...]")
        captured.smoe = [(hooks.events[i][0], hooks.events[i][2]) for i in chosen]

    if request.wants_cam:
        if hooks.cam is None:
            if request.cam_layer is not None:
                raise _missing(request.cam_layer[0], hooks)
            raise ExplainError("no activation layer with spatial output was reached; pass layer=...")
        name, leaf = hooks.cam
        with torch.enable_grad():
            score, values = score_fn(output)
        grad = None
        if score.requires_grad:
            (grad,) = torch.autograd.grad(score, [leaf], allow_unused=True)
        if grad is None:
            raise ExplainError(f"the target does not depend on layer {name!r}")
        captured.cam_name, captured.activation, captured.gradient = name, leaf.detach(), grad
        captured.values = values
    elif score_fn is not None:
        _, captured.values = score_fn(output)
    return captured
