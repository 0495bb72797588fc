"""One file per model: weights plus the model card, loaded without executing pickled code.

Our format is a ``torch.save`` dict ``{"format": "napari-bavis-checkpoint", "format_version": 1,
"card": <JSON-able dict>, "state_dict": <tensors>}`` that ``torch.load(weights_only=True)`` reads.
Also accepted: a plain state_dict of a built-in architecture (``architecture=`` required;
``module.`` prefixes stripped) and a TorchScript file (prediction only, no explanation maps).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from ..outputs import mkstemp_shared
from .card import ModelCard, default_card
from .card_checks import build_checked, check_stored_card
from .device import pick_device

FORMAT = "napari-bavis-checkpoint"
FORMAT_VERSION = 1
#: name of the card inside a TorchScript archive (``torch.jit.save(..., _extra_files=...)``)
TORCHSCRIPT_CARD = "bavis_card.json"
_PREFIXES = ("module.", "_orig_mod.")
_SHOWN = 4  # keys listed per kind in a mismatch message


def state_dict_checksum(state_dict: dict) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of every tensor, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(path, model: nn.Module, card: ModelCard | dict) -> ModelCard:
    """Write ``model``'s weights and its card (checksum filled in) atomically; returns that card."""
    card = ModelCard.from_dict(card) if isinstance(card, dict) else ModelCard.from_dict(card.to_dict())
    arch = getattr(model, "architecture", None)
    if arch is not None and arch != card.architecture:
        raise CheckpointError(f"card says architecture {card.architecture!r} but the model is {arch!r}")
    if arch is not None and not card.architecture_kwargs:
        card.architecture_kwargs = json.loads(json.dumps(getattr(model, "architecture_kwargs", {})))
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    card.checksum = state_dict_checksum(state)
    card.validate()
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "card": card.to_dict(), "state_dict": state}
    path = Path(path)
    fd, tmp = mkstemp_shared(prefix=path.name + ".", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return card


class TorchScriptModel(nn.Module):
    """A TorchScript model usable for prediction; it has no hookable layers, so explanation maps
    (Grad-CAM, SMOE) are not available: ``hookable`` is False and ``note`` says why."""

    hookable = False
    gradcam_layer = None
    smoe_layers: tuple = ()
    note = ("TorchScript model: prediction only; explanation maps need a hookable module "
            "(a built-in architecture loaded from a checkpoint or state_dict)")

    def __init__(self, scripted, architecture: str, takes_sex: bool):
        super().__init__()
        self.scripted = scripted
        self.architecture = architecture
        self.architecture_kwargs = {}
        self.takes_sex = takes_sex

    def forward(self, x, sex=None):
        return self.scripted(x, sex) if self.takes_sex else self.scripted(x)


def _strip_prefixes(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        for p in _PREFIXES:
            while k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def _listing(keys) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")


def load_state_dict_into(model: nn.Module, state: dict, what: str) -> None:
    """Strict load with one readable line on mismatch (missing, unexpected, shape differences)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append(f"shape differences: {_listing(shapes)}")
    if problems:
        raise CheckpointError(f"weights do not fit {what}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _read(path: Path) -> object:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        msg = str(err)
        if "Unsupported global" in msg or "Weights only load failed" in msg:
            detail = ""
            if "Unsupported global" in msg:
                detail = msg.split("Unsupported global:")[-1].split(" was not")[0].replace("GLOBAL", "").strip()
            raise CheckpointError(
                f"{path.name}: refused: it holds pickled Python objects, not only tensors"
                + (f" (e.g. {detail})" if detail else "")
                + "; only plain weights or napari-bavis checkpoints are loaded"
            ) from None
        raise CheckpointError(f"{path.name}: not a readable PyTorch file (corrupt or truncated)") from None
    except Exception:  # noqa: BLE001 - torch raises many kinds for damaged files
        raise CheckpointError(f"{path.name}: not a readable PyTorch file (corrupt, truncated or another format)") from None


def _unwrap_state_dict(obj) -> dict | None:
    """The tensors of a plain state_dict, also when nested under a usual key."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
        if obj and all(isinstance(k, str) for k in obj) and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    return None


def load_checkpoint(path, device="auto", architecture: str | None = None, card: ModelCard | dict | None = None,
                    architecture_kwargs: dict | None = None):
    """``(model, card)`` in eval mode on ``pick_device(device)``.

    Our checkpoint: the card inside wins; its checksum is verified. Plain state_dict: give
    ``architecture`` (and ``architecture_kwargs``, or a ``card``); the card is ``card`` or
    :func:`default_card`. TorchScript: returns a :class:`TorchScriptModel` (prediction only) with the
    card stored in the archive or the ``card`` given.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no model file at {path}")
    dev = pick_device(device)
    given = None
    if card is not None:
        given = ModelCard.from_dict(card if isinstance(card, dict) else card.to_dict())

    if _is_torchscript(path):
        return _load_torchscript(path, dev, architecture, given)

    obj = _read(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        version = obj.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(f"{path.name}: checkpoint format version {version!r} is newer than this "
                                  f"plugin reads ({FORMAT_VERSION}); update napari-bavis")
        state = obj.get("state_dict")
        if not isinstance(state, dict):
            raise CheckpointError(f"{path.name}: checkpoint has no state_dict")
        check_stored_card(obj.get("card"))  # required fields named when missing; a checksum is required
        found = ModelCard.from_dict(obj.get("card")).validate()
        if state_dict_checksum(state) != found.checksum:
            raise CheckpointError(f"{path.name}: weights do not match the card's checksum (file altered or damaged)")
        model = build_checked(found.architecture, found.architecture_kwargs, state, f"{found.architecture!r}")
        return model.to(dev).eval(), found

    state = _unwrap_state_dict(obj)
    if state is None:
        raise CheckpointError(f"{path.name}: a PyTorch file but neither a napari-bavis checkpoint nor a state_dict")
    arch = architecture or (given.architecture if given is not None else None)
    if arch is None:
        from .presets import preset_names

        raise CheckpointError(f"{path.name} is a plain state_dict without a model card: import it with a preset "
                              f"(napari-bavis models import {path.name} --preset NAME --out model.pt; presets: "
                              f"{', '.join(preset_names())}), or pass architecture=...")
    if given is not None and given.architecture != arch:
        raise CheckpointError(f"architecture {arch!r} does not match the card's {given.architecture!r}")
    kwargs = architecture_kwargs if architecture_kwargs is not None else (given.architecture_kwargs if given else {})
    state = _strip_prefixes(state)
    model = build_checked(arch, kwargs, state, f"{arch!r}")
    out_card = given if given is not None else default_card(arch, name=path.stem)
    out_card.architecture_kwargs = json.loads(json.dumps(kwargs))
    if given is None:
        out_card.provenance = f"plain state_dict {path.name}, card defaults (no bias correction, age range unknown)"
    out_card.checksum = state_dict_checksum(model.state_dict())
    return model.to(dev).eval(), out_card.validate()


def _load_torchscript(path: Path, dev, architecture, given):
    extra = {TORCHSCRIPT_CARD: ""}
    try:
        scripted = torch.jit.load(str(path), map_location=dev, _extra_files=extra)
    except Exception:  # noqa: BLE001
        raise CheckpointError(f"{path.name}: TorchScript file cannot be read (corrupt or truncated)") from None
    card = given
    if card is None and extra[TORCHSCRIPT_CARD]:
        try:
            card = ModelCard.from_dict(json.loads(extra[TORCHSCRIPT_CARD]))
        except json.JSONDecodeError:
            raise CheckpointError(f"{path.name}: the model card inside the TorchScript file is not JSON") from None
    if card is None:
        if architecture is None:
            raise CheckpointError(f"{path.name} is TorchScript without a model card: pass card=... "
                                  "(or architecture=... for default card values)")
        card = default_card(architecture, name=path.stem)
        card.provenance = f"TorchScript {path.name}, card defaults"
    card.validate()
    model = TorchScriptModel(scripted, card.architecture, card.sex_encoding is not None)
    return model.eval(), card
