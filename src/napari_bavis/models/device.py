"""Where models run: CUDA first, then Apple MPS, then the CPU."""

from __future__ import annotations

import torch

from ..errors import BavisError


class DeviceError(BavisError):
    """The requested compute device does not exist on this machine."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(preference: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): CUDA, then MPS, then CPU. ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``
    are honoured or refused with a one-line DeviceError."""
    if preference is None or (isinstance(preference, str) and preference.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(preference.strip().lower() if isinstance(preference, str) else preference)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {preference!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("CUDA was requested but no CUDA GPU is available here; use device 'auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"{dev} was requested but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
        return dev
    if dev.type == "mps":
        if not _mps_available():
            raise DeviceError("Apple MPS was requested but is not available here; use device 'auto' or 'cpu'")
        return dev
    raise DeviceError(f"unsupported device {preference!r}: use auto, cpu, cuda, cuda:N or mps")
