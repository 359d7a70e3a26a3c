"""Device names, checked without torch (argument parsers check ``--device`` before anything runs);
:mod:`glmix_vis.devices` owns running on them."""

from __future__ import annotations

import re

__all__ = ["USABLE_DEVICE_TYPES", "check_device_name"]

#: The device types this package runs on.
USABLE_DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
#: Device types torch names but this package does not run on ("not supported", rather than "unknown").
_OTHER_TORCH_TYPES = ("meta", "hpu", "xla", "ipu", "mtia", "lazy", "vulkan", "mkldnn", "opengl", "opencl",
                      "ideep", "hip", "ve", "fpga", "maia", "ort", "privateuseone")
_NAME = re.compile(r"(?P<type>[a-z_]+)(:(?P<index>\d+))?")


def check_device_name(name: str) -> None:
    """A clear ``ValueError`` for a device name torch does not know (``tpu``) or this package cannot
    run on (``meta``); ``auto`` and ``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``xpu`` pass."""
    if name == "auto":
        return
    match = _NAME.fullmatch(name)
    if match is None or match["type"] not in (*USABLE_DEVICE_TYPES, *_OTHER_TORCH_TYPES):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if match["type"] not in USABLE_DEVICE_TYPES:
        raise ValueError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
