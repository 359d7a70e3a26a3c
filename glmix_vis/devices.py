"""Choosing where to run: ``--device auto`` means CUDA when present, else the CPU."""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "autocast_dtype"]


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` if available else ``cpu``; anything else is checked and returned."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype used on ``device`` (None: run in float32)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
