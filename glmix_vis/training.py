"""What every training loop here shares: DDP wrapping, the per-epoch sampler, the resumable
checkpoint of an epoch and its reading back, the history file.

Both the classifier trainer (:mod:`glmix_vis.train`) and the segmenter trainer
(:mod:`glmix_vis.train_seg`) keep one rule for each: a run's folder holds
``checkpoint-epochNNN.pth`` (written atomically) and ``checkpoint-last.pth`` (the same file under
a second name), so a killed run resumes after its last finished epoch, and ``history.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Dataset, DistributedSampler, RandomSampler, Sampler

from .devices import Distributed
from .io import atomic_path, atomic_write_bytes

__all__ = ["CHECKPOINT_LAST", "FINAL_CHECKPOINT", "HISTORY_FILE", "unwrap", "wrap_ddp", "epoch_sampler",
           "save_epoch_checkpoint", "load_last_checkpoint", "restore", "write_history", "gather_arrays", "global_batch_order",
           "per_rank_batch"]

CHECKPOINT_LAST = "checkpoint-last.pth"
FINAL_CHECKPOINT = "final.safetensors"
HISTORY_FILE = "history.json"


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def wrap_ddp(model: nn.Module, d: Distributed) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` under torchrun (its own GPU on CUDA), else as it is."""
    if d.world <= 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)


def epoch_sampler(data: Dataset, d: Distributed, seed: int, epoch: int) -> Sampler:
    """The training order of ``epoch``, a function of ``seed`` and ``epoch`` only (a resumed run
    sees the same one): each rank's share under torchrun, the whole shuffle alone."""
    if d.world > 1:
        sampler = DistributedSampler(data, shuffle=True, seed=seed, drop_last=True)
        sampler.set_epoch(epoch)
        return sampler
    return RandomSampler(data, generator=torch.Generator().manual_seed(seed + epoch))


def per_rank_batch(global_batch: int, world: int) -> int:
    """Each process's share of a global batch, which must divide evenly (a ``ValueError`` otherwise),
    so that 1 or N processes take the same optimiser steps on the same images."""
    if global_batch % world:
        raise ValueError(f"--batch-size {global_batch} does not split over {world} processes; "
                         f"use a multiple of {world}")
    return global_batch // world


def global_batch_order(size: int, global_batch: int, seed: int, epoch: int, rank: int = 0,
                       world: int = 1) -> list[int]:
    """This rank's images of ``epoch``, in step order: one shuffle of the ``size`` images (a function of
    ``seed`` and ``epoch`` only), cut into global batches, each batch's ``k``-th share going to rank
    ``k``. The ranks' step-``s`` batches together are exactly the single process's step-``s`` batch, so
    a run on N processes takes the same steps as one on one (the effective batch is the same). The
    last, incomplete batch is dropped."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    steps = size // global_batch
    share = global_batch // world
    mine: list[int] = []
    for step in range(steps):
        batch = order[step * global_batch:(step + 1) * global_batch]
        mine.extend(batch[rank * share:(rank + 1) * share])
    return mine


def save_epoch_checkpoint(out: Path, state: dict[str, Any], epoch: int, keep_epochs: int = 1) -> None:
    """``state`` as the resumable checkpoint of ``epoch``, also as :data:`CHECKPOINT_LAST`; older
    epoch files beyond ``keep_epochs`` are removed."""
    epoch_file = out / f"checkpoint-epoch{epoch:03d}.pth"
    with atomic_path(epoch_file) as tmp:
        torch.save(state, tmp)
    with atomic_path(out / CHECKPOINT_LAST) as tmp:
        if hasattr(os, "link"):
            os.link(epoch_file, tmp)  # the same file under its second name: no second copy
        else:
            torch.save(state, tmp)
    for old in sorted(out.glob("checkpoint-epoch*.pth"))[:-keep_epochs or None]:
        old.unlink()


def load_last_checkpoint(out: Path) -> dict[str, Any] | None:
    """The state :func:`save_epoch_checkpoint` last wrote in ``out`` (None: nothing to resume)."""
    last = out / CHECKPOINT_LAST
    if not last.exists():
        return None
    return torch.load(last, map_location="cpu", weights_only=True)


def restore(state: dict[str, Any], out: Path, main: bool, **stateful: Any) -> tuple[int, list[dict[str, Any]]]:
    """Load each of ``stateful`` (``model=``, ``optimizer=``, ...) from its entry of a saved ``state``;
    the epoch it finished and the history so far (the main process says it resumes)."""
    for name, obj in stateful.items():
        obj.load_state_dict(state[name])
    epoch = int(state["epoch"])
    if main:
        print(f"resuming from {out / CHECKPOINT_LAST} after epoch {epoch}")
    return epoch, list(state["history"])


def write_history(out: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_bytes(out / HISTORY_FILE, json.dumps(history, indent=1).encode())


def gather_arrays(array: np.ndarray, d: Distributed) -> np.ndarray:
    """Every rank's ``array`` concatenated along the first axis, in rank order."""
    if d.world == 1:
        return array
    parts: list[Any] = [None] * d.world
    dist.all_gather_object(parts, array)
    return np.concatenate(parts, axis=0)
