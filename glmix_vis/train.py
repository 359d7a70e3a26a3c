"""Training a GLNet classifier from image-level labels only (the first step of WSSS).

Multi-label classification with binary cross-entropy: the masks of the dataset are never read.
AdamW with a linear warm-up and a cosine decay per step, mixed precision on CUDA, one
resumable checkpoint per epoch (written atomically), validation mAP per epoch, and a final
slim ``.safetensors`` file that records the model name, classes, input size and normalisation
so later commands need no flags. Runs under ``torchrun`` (DDP, gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, SequentialSampler
from tqdm.auto import tqdm

from .data import SegmentationDataset, open_dataset
from .data.labels import LabelSpace
from .devices import Distributed, autocast_dtype, init_distributed
from .models.checkpoints import save_safetensors
from .models.glnet import GLNET_MEAN, GLNET_STD
from .models.meta import HEAD_FOREGROUND, CheckpointMeta
from .preprocess import normalize, to_tensor
from .training import (
    CHECKPOINT_LAST,
    FINAL_CHECKPOINT,
    epoch_sampler,
    gather_arrays,
    load_last_checkpoint,
    restore,
    save_epoch_checkpoint,
    unwrap,
    wrap_ddp,
    write_history,
)
from .wsss.outdir import tie_settings

__all__ = ["TrainConfig", "train", "preamble", "training_settings", "multilabel_average_precision", "CHECKPOINT_LAST",
           "FINAL_CHECKPOINT"]


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in every checkpoint it writes."""

    root: str
    out: str
    dataset: str = "voc"
    train_split: str = "train"
    val_split: str = "val"
    model: str = "glnet_nano"
    init: str | None = None
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    input_size: int = 160
    crop_scale: tuple[float, float] = (0.8, 1.0)  # small crops would cut objects out while their label stays
    drop_path: float = 0.05
    # slot_scale is a softmax temperature that must grow from dim**-0.5 (~0.2) to ~10 for the
    # soft clustering to become selective; Adam moves a parameter by about lr per step, so at
    # the base lr a short run leaves every slot assignment near uniform.
    slot_scale_lr_mult: float = 100.0
    workers: int = 2
    device: str = "auto"
    seed: int = 0
    amp: bool = True
    keep_epochs: int = 1
    max_train_images: int | None = None
    mean: tuple[float, float, float] = GLNET_MEAN
    std: tuple[float, float, float] = GLNET_STD
    extra: dict[str, Any] = field(default_factory=dict)


#: Fields that never change what a run computes (where it writes, how it reads, what it keeps).
RUN_ONLY_FIELDS = ("out", "workers", "device", "keep_epochs")


def training_settings(config: TrainConfig) -> dict[str, Any]:
    """What decides a run's checkpoints, as ``OUT/settings.json`` records it: every
    :class:`TrainConfig` field but :data:`RUN_ONLY_FIELDS`, the data folder resolved."""
    record = json.loads(json.dumps(asdict(config)))
    for name in RUN_ONLY_FIELDS:
        record.pop(name, None)
    record["root"] = str(Path(config.root).expanduser().resolve())
    return record


def _claim(config: TrainConfig, out: Path, write: bool) -> None:
    """Eval's resume rule (:func:`glmix_vis.wsss.outdir.tie_settings`) for a training folder: the
    same settings resume, others are refused in one line naming the differences (a folder from
    before ``settings.json`` is compared through its last checkpoint's config)."""
    recorded = None
    last = out / CHECKPOINT_LAST
    if not (out / "settings.json").exists() and last.exists():
        state = torch.load(last, map_location="cpu", weights_only=True)
        if isinstance(state.get("config"), dict):
            known = {k: v for k, v in state["config"].items() if k in TrainConfig.__dataclass_fields__}
            recorded = training_settings(TrainConfig(**known))
    tie_settings(out, training_settings(config), holds="checkpoints", write=write, recorded=recorded)


# ------------------------------------------------------------------------------------ data
class ImageLabelDataset(Dataset):
    """Images and their image-level labels: what weak supervision is allowed to see."""

    def __init__(self, dataset: SegmentationDataset, size: int, train: bool, crop_scale: tuple[float, float],
                 mean: tuple[float, ...], std: tuple[float, ...], limit: int | None = None) -> None:
        from torchvision.transforms import v2

        self.dataset = dataset
        self.indices = list(range(len(dataset) if limit is None else min(limit, len(dataset))))
        self.mean, self.std = mean, std
        if train:
            self.transform = v2.Compose([
                v2.RandomResizedCrop(size, scale=crop_scale, antialias=True),
                v2.RandomHorizontalFlip(),
                v2.ColorJitter(0.3, 0.3, 0.3, 0.05),
            ])
        else:
            self.transform = v2.Resize((size, size), antialias=True)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.indices[i]
        image = self.dataset.load_image(index)
        labels = torch.from_numpy(np.asarray(self.dataset.image_labels(index), dtype=np.float32))
        x = self.transform(to_tensor(image))
        return normalize(x, self.mean, self.std), labels


# ------------------------------------------------------------------------------------ metrics
def multilabel_average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-class average precision (area under the step precision-recall curve, as in
    scikit-learn / PASCAL VOC 2010+). Classes with no positive example get NaN."""
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets) > 0.5
    ap = np.full(scores.shape[1], np.nan)
    for k in range(scores.shape[1]):
        positives = targets[:, k].sum()
        if positives == 0:
            continue
        order = np.argsort(-scores[:, k], kind="mergesort")
        hits = targets[order, k]
        tp = np.cumsum(hits)
        precision = tp / np.arange(1, len(hits) + 1)
        ap[k] = float((precision * hits).sum() / positives)
    return ap


# ------------------------------------------------------------------------------------ checkpoints
def _lr_lambda(total_steps: int, warmup_steps: int, min_ratio: float):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def checkpoint_meta(config: TrainConfig, class_names: list[str], **extra: Any) -> dict[str, Any]:
    """What later commands read back: the model, its classes (background first, the head
    predicts the foreground ones), the input size and normalisation."""
    labels = LabelSpace.of_dataset(class_names)
    meta = CheckpointMeta(model=config.model, classes=list(labels.class_names), head=HEAD_FOREGROUND,
                          input_size=(config.input_size, config.input_size), mean=tuple(config.mean),
                          std=tuple(config.std),
                          extra=dict(num_classes=labels.head_size, dataset=config.dataset, **extra))
    return meta.to_mapping()


# ------------------------------------------------------------------------------------ the loop
def train(config: TrainConfig) -> dict[str, Any]:
    """Train (or resume) and return the run's history and the final checkpoint path.

    A run that fails before writing anything leaves no empty output folder behind.
    """
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; choose a folder")
    created = not out.exists()
    if not created:
        _claim(config, out, write=False)  # before any data or model is touched
    try:
        return _train(config, out)
    except BaseException:
        if created and out.is_dir() and {p.name for p in out.iterdir()} <= {"settings.json"}:
            (out / "settings.json").unlink(missing_ok=True)  # only the settings it recorded: nothing to resume
            out.rmdir()
        raise


@dataclass
class _Run:
    """One training run as its steps share it: the process, the data, the model and its optimiser."""

    config: TrainConfig
    out: Path
    d: Distributed
    labels: LabelSpace
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    train_data: ImageLabelDataset
    val_data: ImageLabelDataset
    per_rank_batch: int
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def _train(config: TrainConfig, out: Path) -> dict[str, Any]:
    d = init_distributed(config.device)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        _claim(config, out, write=True)
    torch.manual_seed(config.seed + d.rank)
    run = _prepare(config, out, d)
    _resume(run)
    if d.main:
        print(preamble(run), flush=True)
    run.model = wrap_ddp(run.model, d)
    criterion = nn.BCEWithLogitsLoss()
    loader_args = _loader_args(run)
    val_sampler = DistributedSampler(run.val_data, shuffle=False) if d.world > 1 else SequentialSampler(run.val_data)
    val_loader = DataLoader(run.val_data, sampler=val_sampler, **loader_args)
    for epoch in range(run.start_epoch, config.epochs):
        started = time.perf_counter()
        train_loss = _train_epoch(run, epoch, criterion, loader_args)
        val_map, val_ap = _validate(run.model, val_loader, d, run.amp_dtype)
        record = dict(epoch=epoch + 1, train_loss=train_loss, val_map=val_map,
                      val_ap=[None if math.isnan(a) else float(a) for a in val_ap],
                      seconds=time.perf_counter() - started)
        run.history.append(record)
        if d.main:
            left = (config.epochs - epoch - 1) * record["seconds"]
            print(f"epoch {epoch + 1}/{config.epochs}: loss {record['train_loss']:.4f}  val mAP {val_map:.4f}  "
                  f"({record['seconds']:.0f} s{f'; about {_duration(left)} left' if left else ''})", flush=True)
            _save_epoch(run, epoch + 1)
    return _finish(run)


def _prepare(config: TrainConfig, out: Path, d: Distributed) -> _Run:
    """The datasets, the model on its device, the optimiser and its warm-up + cosine schedule."""
    train_set = open_dataset(config.dataset, config.root, config.train_split)
    val_set = open_dataset(config.dataset, config.root, config.val_split)
    labels = LabelSpace.of_dataset(train_set.class_names)

    model = _build_model(config, labels.head_size).to(d.device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(_param_groups(model, config), lr=config.lr)

    train_data = ImageLabelDataset(train_set, config.input_size, True, config.crop_scale, config.mean, config.std,
                                   config.max_train_images)
    val_data = ImageLabelDataset(val_set, config.input_size, False, config.crop_scale, config.mean, config.std)
    per_rank_batch = max(1, config.batch_size // d.world)
    steps_per_epoch = epoch_steps(len(train_data), per_rank_batch, d.world)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(
        total_steps, int(config.warmup_epochs * steps_per_epoch), config.min_lr / config.lr))
    amp_dtype = autocast_dtype(d.device) if config.amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    return _Run(config, out, d, labels, model, optimizer, scheduler, scaler, amp_dtype, train_data, val_data,
                per_rank_batch)


def preamble(run: _Run) -> str:
    """What a run is about to do, said before its first batch: the model, the images, the folder,
    the epochs, and where a resumed run starts (the epoch lines then give the time left)."""
    c = run.config
    params = sum(p.numel() for p in run.model.parameters()) / 1e6
    start = (f"resuming after epoch {run.start_epoch}" if run.start_epoch
             else "from random weights" if c.init is None else f"from {c.init}")
    return (f"training {c.model} ({params:.1f}M parameters, {start}) on {len(run.train_data)} {c.train_split} images "
            f"({len(run.val_data)} {c.val_split} images scored after each epoch) of {c.root}, on "
            f"{run.d.device}{f' x {run.d.world} processes' if run.d.world > 1 else ''}: {c.epochs} epochs of "
            f"{_loader_steps(run)} steps (global batch {c.batch_size}), into {run.out}")


def epoch_steps(images: int, per_rank_batch: int, world: int = 1) -> int:
    """The optimiser steps of one epoch as :func:`_train_epoch`'s loader makes them: its last,
    partial batch is dropped when there is more than one. The schedule counts exactly these, so the
    learning rate reaches its floor at the last step."""
    mine = images // world if world > 1 else images
    return mine // per_rank_batch if images > per_rank_batch else math.ceil(mine / per_rank_batch)


def _loader_steps(run: _Run) -> int:
    return epoch_steps(len(run.train_data), run.per_rank_batch, run.d.world)


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2.5 h``: a time left as a person reads it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _resume(run: _Run) -> None:
    """Continue after the last finished epoch when the output folder has a checkpoint of it."""
    state = load_last_checkpoint(run.out)
    if state is None:
        return
    run.start_epoch, run.history = restore(state, run.out, run.d.main, model=run.model, optimizer=run.optimizer,
                                           scheduler=run.scheduler, scaler=run.scaler)


def _loader_args(run: _Run) -> dict[str, Any]:
    return dict(batch_size=run.per_rank_batch, num_workers=run.config.workers, pin_memory=run.d.device.type == "cuda",
                persistent_workers=run.config.workers > 0)


def _train_epoch(run: _Run, epoch: int, criterion: nn.Module, loader_args: dict[str, Any]) -> float:
    """One pass over the training images (reshuffled per epoch from the seed); the mean loss."""
    config, d, train_data = run.config, run.d, run.train_data
    sampler = epoch_sampler(train_data, d, config.seed, epoch)
    loader = DataLoader(train_data, sampler=sampler, drop_last=len(train_data) > run.per_rank_batch, **loader_args)
    run.model.train()
    seen, loss_sum = 0, 0.0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not d.main, leave=False)
    for x, y in bar:
        loss = _train_step(run, criterion, x, y)
        seen += len(x)
        loss_sum += loss * len(x)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", lr=f"{run.scheduler.get_last_lr()[0]:.2e}")
    return loss_sum / max(seen, 1)


def _train_step(run: _Run, criterion: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """One optimiser step on a batch (mixed precision where it applies, gradients clipped at 5)."""
    d, amp_dtype = run.d, run.amp_dtype
    x = x.to(d.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    y = y.to(d.device, non_blocking=True)
    with torch.autocast(d.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        loss = criterion(run.model(x).float(), y)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)
    nn.utils.clip_grad_norm_(run.model.parameters(), 5.0)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return loss.item()


def _finish(run: _Run) -> dict[str, Any]:
    """The final slim checkpoint and the history, written by the main process once all are done."""
    final = run.out / FINAL_CHECKPOINT
    if run.d.main:
        history = run.history
        meta = checkpoint_meta(run.config, list(run.labels.class_names),
                               val_map=history[-1]["val_map"] if history else None, epochs=run.config.epochs)
        save_safetensors(unwrap(run.model).state_dict(), final, meta=meta)
        write_history(run.out, history)
    if run.d.world > 1:
        dist.barrier()
    return dict(history=run.history, checkpoint=str(final))


def _param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """Weight decay on weights only; slot temperatures on their own, faster learning rate."""
    decay, no_decay, temperatures = [], [], []
    skip = model.no_weight_decay()
    for name, p in model.named_parameters():
        if name.endswith("slot_scale"):
            temperatures.append(p)
        elif p.ndim <= 1 or name in skip:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if temperatures:
        groups.append({"params": temperatures, "weight_decay": 0.0, "lr": config.lr * config.slot_scale_lr_mult})
    return groups


def _build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    if config.init:
        from .models.factory import create_model

        model = create_model(config.model, checkpoint=config.init, num_classes=num_classes,
                             drop_path_rate=config.drop_path)
    else:
        model = timm.create_model(config.model, num_classes=num_classes, drop_path_rate=config.drop_path)
    return model


@torch.no_grad()
def _validate(model: nn.Module, loader: DataLoader, d: Distributed, amp_dtype: torch.dtype | None
              ) -> tuple[float, np.ndarray]:
    model.eval()
    scores, targets = [], []
    for x, y in loader:
        x = x.to(d.device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(d.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            scores.append(model(x).float().sigmoid().cpu().numpy())
        targets.append(y.numpy())
    s = gather_arrays(np.concatenate(scores), d)
    t = gather_arrays(np.concatenate(targets), d)
    ap = multilabel_average_precision(s, t)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan"), ap


def _save_epoch(run: _Run, epoch: int) -> None:
    """The resumable checkpoint of ``epoch`` (optimiser, schedule and history too), also as
    ``checkpoint-last.pth``; older epoch files beyond ``keep_epochs`` are removed."""
    config = run.config
    state = dict(model=unwrap(run.model).state_dict(), optimizer=run.optimizer.state_dict(),
                 scheduler=run.scheduler.state_dict(), scaler=run.scaler.state_dict(), epoch=epoch,
                 history=run.history, meta=checkpoint_meta(config, list(run.labels.class_names), epoch=epoch),
                 config=json.loads(json.dumps(asdict(config))))
    save_epoch_checkpoint(run.out, state, epoch, config.keep_epochs)
