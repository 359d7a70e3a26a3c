"""Choosing where and in what precision the network runs.

``--device auto`` means CUDA when present, else the CPU. ``--precision`` picks the dtype of the
network's forward passes (:func:`resolve_precision`): the weights stay float32 and the forward
runs under ``torch.autocast``; whatever is derived from its outputs (slot maps' views, class
evidence, masks) is computed in float32. ``auto`` means bfloat16 where the hardware computes it
natively (CUDA GPUs, CPUs with AVX512-BF16 or AMX), float16 on a GPU without bfloat16, float32
elsewhere.

Which precision applies is set once per caller, around its work (:func:`inference_precision`:
the predictor and the eval loop), and applied at each forward pass by :func:`network_autocast`
(:func:`glmix_vis.models.slots.run_slots`, the one place the pipeline runs the network).

Under ``torchrun`` every process joins one process group the same way (:func:`init_distributed`:
training and the eval loop alike).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import torch

from .device_names import check_device_name
from .precisions import DEFAULT_PRECISION, PRECISIONS

__all__ = ["resolve_device", "check_device_name", "autocast_dtype", "PRECISIONS", "PRECISION_DTYPES", "DEFAULT_PRECISION",
           "resolve_precision", "precision_name", "cpu_supports_bf16", "inference_precision",
           "network_precision", "network_autocast", "Distributed", "init_distributed"]


#: The dtype each precision name stands for (what outputs record, e.g. ``settings.json``).
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: /proc/cpuinfo flags of native bfloat16 matrix instructions (x86).
_CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` if available else ``cpu``; anything else is checked and returned."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device_name(name)
    device = torch.device(name)
    if device.type != "cpu":
        _check_available(name, device)
    return device


#: How each accelerator type is named in messages, and how torch tells whether this machine has one.
_ACCELERATORS = {"cuda": "CUDA", "mps": "MPS (Apple GPU)", "xpu": "XPU (Intel GPU)"}


def _check_available(name: str, device: torch.device) -> None:
    """One clear ``ValueError`` for an accelerator this machine lacks, instead of torch's error at first use."""
    backend = getattr(torch.backends, device.type, None) if device.type == "mps" else getattr(torch, device.type, None)
    available = bool(backend is not None and backend.is_available())
    if not available:
        raise ValueError(f"device {name!r} requested but {_ACCELERATORS[device.type]} is not available on this machine")
    count = getattr(backend, "device_count", None)
    if device.index is not None and callable(count) and device.index >= count():
        raise ValueError(f"device {name!r} requested but this machine has {count()} {device.type} device(s)")


def _cuda_bf16(device: torch.device) -> bool:
    """Whether the GPU computes bfloat16 natively (emulated bfloat16 is slower than float16)."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.3 has no including_emulation
        return bool(torch.cuda.is_bf16_supported())


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype training uses on ``device`` (None: float32): a GPU's half type."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if _cuda_bf16(device) else torch.float16


def _cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from ``/proc/cpuinfo`` (None where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX512-BF16 or AMX-BF16).

    Read from ``/proc/cpuinfo`` on Linux, else from torch's CPU capability checks; False when
    neither can tell (bfloat16 is then emulated, slower than float32).
    """
    flags = _cpu_flags() if sys.platform.startswith("linux") else None
    if flags is not None:
        return bool(flags & _CPU_BF16_FLAGS)
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return any(bool(check()) for check in checks if check is not None)
    except RuntimeError:
        return False


def _autocast_available(device_type: str) -> bool:
    try:
        return bool(torch.amp.is_autocast_available(device_type))
    except AttributeError:  # torch < 2.4
        return device_type in ("cpu", "cuda")


def resolve_precision(name: str | torch.dtype, device: str | torch.device) -> torch.dtype:
    """The dtype the network's forward passes run in on ``device``: ``"fp32"``, ``"bf16"``,
    ``"fp16"`` or ``"auto"`` (bfloat16 on a CUDA GPU that has it, else float16; bfloat16 on a CPU
    with AVX512-BF16 or AMX; float32 elsewhere). A clear ``ValueError`` for an unknown name, or a
    half precision the device cannot autocast to (bfloat16 on a GPU without it)."""
    device = resolve_device(device)
    if isinstance(name, torch.dtype):
        if name not in PRECISION_DTYPES.values():
            raise ValueError(f"precision {name} is not supported; use float32, bfloat16 or float16")
        name = precision_name(name)
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; use {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if _cuda_bf16(device) else torch.float16
        if device.type == "cpu" and cpu_supports_bf16():
            return torch.bfloat16
        return torch.float32
    dtype = PRECISION_DTYPES[name]
    if dtype == torch.float32:
        return dtype
    if not _autocast_available(device.type):
        raise ValueError(f"--precision {name}: torch cannot autocast on {device.type}; use fp32")
    if dtype == torch.bfloat16 and device.type == "cuda" and not _cuda_bf16(device):
        raise ValueError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use fp16 or auto")
    return dtype


def precision_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bf16"`` (the name ``--precision`` takes and the outputs record)."""
    for name, known in PRECISION_DTYPES.items():
        if known == dtype:
            return name
    raise ValueError(f"precision {dtype} is not supported; use float32, bfloat16 or float16")


# The precision of the network's forward passes in the current context (thread, task): set by
# the caller around its work, read at each forward pass.
_NETWORK_DTYPE: ContextVar[torch.dtype] = ContextVar("glmix_network_dtype", default=torch.float32)


@contextmanager
def inference_precision(dtype: torch.dtype) -> Iterator[None]:
    """Network forward passes inside this block (through :func:`network_autocast`) run in ``dtype``."""
    token = _NETWORK_DTYPE.set(dtype)
    try:
        yield
    finally:
        _NETWORK_DTYPE.reset(token)


def network_precision() -> torch.dtype:
    """The dtype the enclosing :func:`inference_precision` asks for (float32 outside any)."""
    return _NETWORK_DTYPE.get()


@contextmanager
def network_autocast(device: str | torch.device) -> Iterator[None]:
    """Wrap one forward pass of the network on ``device``: ``torch.autocast`` to the enclosing
    :func:`inference_precision`'s dtype, nothing at all for float32 (bit-identical to no wrapper)."""
    dtype = network_precision()
    if dtype == torch.float32:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=dtype):
        yield


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` launch (a single process: rank 0 of 1).

    Attributes:
        rank: this process's rank; world: how many processes take part.
        device: where this process computes (its own GPU, ``LOCAL_RANK``, on a CUDA machine).
        local_world: processes on this machine (``LOCAL_WORLD_SIZE``): they share its cores.
    """

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    local_world: int = 1

    @property
    def main(self) -> bool:
        """Whether this is the process that writes shared outputs and prints."""
        return self.rank == 0


def init_distributed(device: str | torch.device = "auto") -> Distributed:
    """Join ``torchrun``'s process group (once per process), or run alone without one.

    ``device`` is resolved (:func:`resolve_device`); on CUDA each process takes the GPU of its
    ``LOCAL_RANK`` and the group uses NCCL, else gloo. The environment is read as ``torchrun``
    sets it (``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``).
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device)
    if world <= 1:
        return Distributed(0, 1, device, 1)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), device,
                       int(os.environ.get("LOCAL_WORLD_SIZE", world)))
