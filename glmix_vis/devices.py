"""Choosing where to run: ``--device auto`` means CUDA when present, else the CPU."""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "check_device_name", "autocast_dtype"]

_USABLE = ("cpu", "cuda", "mps", "xpu")


def check_device_name(name: str) -> None:
    """A clear ``ValueError`` for a device name torch does not know (``tpu``) or cannot run here."""
    if name == "auto":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in _USABLE:
        raise ValueError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` if available else ``cpu``; anything else is checked and returned."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device_name(name)
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype used on ``device`` (None: run in float32)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
