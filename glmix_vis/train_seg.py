"""Stage 2 of WSSS: a GLNet segmenter trained on pseudo-masks (or, for the upper bound, ground truth).

The standard recipe (DeepLab / CLIP-ES / ToCo; the defaults are the literature's, and
``eval/RESULTS.md`` says which are measured), every part a field of :class:`SegTrainConfig` and a
flag of ``glmix-wsss train-seg``:

* the backbone initialised from a classification checkpoint (its classifier left out), its GLMix
  slots intact, and a decoder (:mod:`glmix_vis.models.segmenter`);
* cross-entropy averaged over background and foreground pixels separately (``loss="balanced"``:
  ToCo's ``get_seg_loss``, DSRG's balanced loss), label 255 ignored (also the pixels a pseudo-mask's
  confidence band left out);
* random scale (0.5-1.5), a random crop padded with 255, a random horizontal flip;
* AdamW, a poly learning-rate decay per step, the backbone at ``backbone_lr_mult`` of the decoder's
  rate; the backbone's BatchNorm statistics frozen (DeepLab's practice; the decoder has none), so a
  step depends on the batch's images, not on how they are split over processes.

Under ``torchrun`` every global batch is split over the processes (:func:`~glmix_vis.training.global_batch_order`)
and the balanced loss is normalised by the global pixel counts, so 1 or N processes take the same
steps. A run resumes after its last finished epoch with the same result: the image order, the
augmentation (seeded by seed, epoch and image) and dropout depend on nothing else.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .data import SegmentationDataset, open_dataset
from .data.mask_source import GROUND_TRUTH, MaskSource
from .devices import Distributed, autocast_dtype, init_distributed
from .models.checkpoints import save_safetensors
from .models.factory import create_segmenter
from .models.meta import HEAD_SEGMENTATION, CheckpointMeta
from .models.segmenter import DECODER_META_KEY, DecoderConfig
from .preprocess import image_to_batch, normalize, to_tensor
from .training import (
    FINAL_CHECKPOINT,
    global_batch_order,
    load_last_checkpoint,
    per_rank_batch,
    restore,
    save_epoch_checkpoint,
    unwrap,
    wrap_ddp,
    write_history,
)
from .wsss.metrics import ConfusionMatrix, all_reduce_confusion

__all__ = ["SegTrainConfig", "train_segmenter", "segmentation_loss", "LOSSES", "SegCropDataset"]

LOSSES = ("balanced", "ce")


@dataclass
class SegTrainConfig:
    """Everything a segmenter's training depends on; recorded in its checkpoints."""

    root: str
    out: str
    masks: str = "gt"  # eval's OUT/masks folder, or "gt" (the dataset's own masks)
    init: str | None = None  # a classification checkpoint for the backbone (None: the bundled model)
    model: str | None = None  # the backbone variant (None: the one ``init`` holds)
    dataset: str = "voc"
    train_split: str = "train"
    val_split: str | None = "val"
    decoder: str = "mlp"
    decoder_dim: int = 128
    decoder_dropout: float = 0.1
    aspp_rates: tuple[int, ...] = (1, 2, 3, 4)
    epochs: int = 10
    batch_size: int = 16  # global: the same for 1 or N processes
    lr: float = 1e-3  # the decoder's; the backbone's is lr * backbone_lr_mult
    backbone_lr_mult: float = 0.1
    weight_decay: float = 0.01
    poly_power: float = 0.9
    warmup_epochs: float = 0.0
    loss: str = "balanced"
    crop_size: int = 128
    scale_range: tuple[float, float] = (0.5, 1.5)
    flip: bool = True
    freeze_bn: bool = True
    workers: int = 2
    device: str = "auto"
    seed: int = 0
    amp: bool = True
    keep_epochs: int = 1
    val_every: int = 1  # epochs between val mIoU measurements (0: never; the last epoch always when > 0)
    max_train_images: int | None = None
    max_val_images: int | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        lo, hi = (float(v) for v in self.scale_range)
        if not 0 < lo <= hi:
            raise ValueError(f"scale range must be 0 < low <= high, got {self.scale_range!r}")
        self.scale_range = (lo, hi)
        self.aspp_rates = tuple(int(r) for r in self.aspp_rates)
        for name in ("epochs", "batch_size", "crop_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.backbone_lr_mult < 0 or self.poly_power < 0:
            raise ValueError("lr must be > 0, backbone_lr_mult and poly_power >= 0")
        self.decoder_config()  # validates the decoder's settings

    def decoder_config(self) -> DecoderConfig:
        return DecoderConfig(self.decoder, self.decoder_dim, self.decoder_dropout, self.aspp_rates)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


# ------------------------------------------------------------------------------------ data
class SegCropDataset(Dataset):
    """Images and their masks, augmented: random scale, a ``crop``-sized crop (padded with label 255
    and a zero normalised image where the scaled image is smaller), a random flip. The augmentation
    of image ``i`` in epoch ``e`` is drawn from ``(seed, e, i)`` alone: a resumed run, any number of
    loader workers and any number of processes see the same crops."""

    def __init__(self, masks: MaskSource, config: SegTrainConfig, mean: tuple[float, ...], std: tuple[float, ...],
                 limit: int | None = None) -> None:
        self.masks, self.config, self.mean, self.std = masks, config, mean, std
        n = len(masks.dataset)
        self.count = n if limit is None else min(limit, n)
        self.epoch = 0

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self.epoch, i])
        x = normalize(to_tensor(self.masks.dataset.load_image(i)), self.mean, self.std)
        y = torch.from_numpy(self.masks.load_mask(i).astype(np.int64))
        scale = rng.uniform(*cfg.scale_range)
        h, w = max(1, round(x.shape[1] * scale)), max(1, round(x.shape[2] * scale))
        x = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        y = F.interpolate(y[None, None].float(), size=(h, w), mode="nearest")[0, 0].long()
        c = cfg.crop_size
        ph, pw = max(0, c - h), max(0, c - w)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), value=0.0)
            y = F.pad(y, (0, pw, 0, ph), value=self.masks.dataset.ignore_index)
        top, left = int(rng.integers(0, x.shape[1] - c + 1)), int(rng.integers(0, x.shape[2] - c + 1))
        x, y = x[:, top:top + c, left:left + c], y[top:top + c, left:left + c]
        if cfg.flip and rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x.contiguous(), y.contiguous()


# ------------------------------------------------------------------------------------ the loss
def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, balanced: bool = True, ignore_index: int = 255,
                      world: int = 1) -> torch.Tensor:
    """Cross-entropy over the labelled pixels, ``ignore_index`` left out.

    ``balanced``: the mean over background pixels and the mean over foreground pixels, averaged
    (ToCo's ``get_seg_loss``; a term with no pixel counts 0 instead of ToCo's NaN). Under DDP
    (``world`` > 1) the pixel counts are summed over the processes and the loss is scaled by
    ``world``, so DDP's gradient average equals the gradient of the loss of the whole global batch.
    """
    per_pixel = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    background = target == 0
    foreground = (target != 0) & (target != ignore_index)
    sums = torch.stack([per_pixel[background].sum(), per_pixel[foreground].sum()])
    counts = torch.stack([background.sum(), foreground.sum()]).float()
    if world > 1:
        dist.all_reduce(counts)
    if balanced:
        terms = torch.where(counts > 0, sums / counts.clamp_min(1), torch.zeros_like(sums))
        loss = 0.5 * terms.sum()
    else:
        loss = sums.sum() / counts.sum().clamp_min(1)
    return loss * world


# ------------------------------------------------------------------------------------ the run
@dataclass
class _Run:
    config: SegTrainConfig
    out: Path
    d: Distributed
    masks: MaskSource
    val_set: SegmentationDataset | None
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    amp_dtype: torch.dtype | None
    data: SegCropDataset
    steps_per_epoch: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def train_segmenter(config: SegTrainConfig) -> dict[str, Any]:
    """Train (or resume) a segmenter; the history and the final checkpoint's path. Bad masks are
    refused (one :class:`~glmix_vis.data.DatasetError` naming the files) before anything is written."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; choose a folder")
    d = init_distributed(config.device)
    run = _prepare(config, out, d)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    _resume(run)
    if d.main:
        print(preamble(run), flush=True)
    run.model = wrap_ddp(run.model, d)
    total = run.steps_per_epoch * config.epochs
    bar = tqdm(total=total, initial=run.start_epoch * run.steps_per_epoch, desc="train-seg", unit="step",
               disable=not d.main, dynamic_ncols=True)
    try:
        for epoch in range(run.start_epoch, config.epochs):
            record = _train_epoch(run, epoch, bar)
            if run.val_set is not None and config.val_every and (
                    (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs):
                record["val_miou"] = _validate(run)
            run.history.append(record)
            if d.main:
                bar.write(f"epoch {epoch + 1}/{config.epochs}: loss {record['train_loss']:.4f}"
                          + (f"  val mIoU {record['val_miou']:.2f}" if "val_miou" in record else "")
                          + f"  ({record['images_per_s']:.1f} img/s)")
                _save_epoch(run, epoch + 1)
    finally:
        bar.close()
    return _finish(run)


def preamble(run: _Run) -> str:
    """What the run will do, said before its first step: model and start, masks, images, device,
    epochs and where it writes (the bar then gives the time left)."""
    c = run.config
    params = sum(p.numel() for p in run.model.parameters()) / 1e6
    start = f"resuming after epoch {run.start_epoch}" if run.start_epoch else f"backbone from {c.init or 'the bundled demo model'}"
    source = run.masks.provenance()
    masks = "the dataset's own masks" if source["source"] == GROUND_TRUTH else f"the masks in {source.get('folder')}"
    val = f"; {c.val_split} mIoU every {c.val_every} epochs" if run.val_set is not None and c.val_every else ""
    return (f"training a {_variant(run)} {c.decoder} segmenter ({params:.1f}M parameters, {start}) on {len(run.data)} "
            f"{c.train_split} images of {c.root} with {masks}, on {run.d.device}"
            f"{f' x {run.d.world} processes' if run.d.world > 1 else ''}: {c.epochs} epochs of {run.steps_per_epoch} "
            f"steps (global batch {c.batch_size}, {c.crop_size} px crops){val}, into {run.out}")


def _prepare(config: SegTrainConfig, out: Path, d: Distributed) -> _Run:
    """Data (the masks checked in full first), the segmenter on its device, the optimiser and its schedule."""
    train_set = open_dataset(config.dataset, config.root, config.train_split)
    masks = MaskSource.open(train_set, config.masks)
    masks.validate(config.max_train_images)
    val_set = open_dataset(config.dataset, config.root, config.val_split) if config.val_split else None
    if val_set is not None and list(val_set.class_names) != list(train_set.class_names):
        raise ValueError(f"the {config.val_split} split has other classes than {config.train_split}")
    from .assets import default_checkpoint

    init = config.init if config.init is not None else str(default_checkpoint())
    torch.manual_seed(config.seed)  # the decoder's initial weights: the same in every run and process
    model = create_segmenter(config.model, len(train_set.class_names), config.decoder_config(), init=init)
    cfg = model.pretrained_cfg
    mean, std = tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    model = model.to(d.device)
    per_rank_batch(config.batch_size, d.world)  # refuses a batch that does not split evenly
    data = SegCropDataset(masks, config, mean, std, config.max_train_images)
    steps = len(data) // config.batch_size
    if steps == 0:
        raise ValueError(f"{len(data)} training images make no batch of {config.batch_size}; lower --batch-size")
    optimizer = torch.optim.AdamW(_param_groups(model, config), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _poly(steps * config.epochs, int(
        config.warmup_epochs * steps), config.poly_power))
    amp_dtype = autocast_dtype(d.device) if config.amp else None
    return _Run(config, out, d, masks, val_set, model, optimizer, scheduler, amp_dtype, data, steps, mean, std)


def _poly(total_steps: int, warmup_steps: int, power: float):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, 1 - step / max(1, total_steps)) ** power

    return factor


def _param_groups(model: nn.Module, config: SegTrainConfig) -> list[dict[str, Any]]:
    """Backbone and decoder at their own rates; no weight decay on norms, biases and slot parameters."""
    skip = model.no_weight_decay()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        key = (name.startswith("backbone."), p.ndim > 1 and name not in skip)
        groups.setdefault(key, []).append(p)
    return [{"params": params, "lr": config.lr * (config.backbone_lr_mult if backbone else 1.0),
             "weight_decay": config.weight_decay if decay else 0.0}
            for (backbone, decay), params in sorted(groups.items())]


def _resume(run: _Run) -> None:
    state = load_last_checkpoint(run.out)
    if state is None:
        return
    saved = state.get("config", {})
    if saved.get("masks") != run.config.masks or saved.get("batch_size") != run.config.batch_size:
        raise ValueError(f"{run.out} holds a run on other masks or another batch size; choose another --out")
    run.start_epoch, run.history = restore(state, run.out, run.d.main, model=run.model, optimizer=run.optimizer,
                                           scheduler=run.scheduler)


def set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """Training mode, with the backbone's BatchNorm statistics frozen when asked (DeepLab's practice)."""
    model.train()
    if freeze_bn:
        for m in unwrap(model).backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _train_epoch(run: _Run, epoch: int, bar: tqdm) -> dict[str, Any]:
    """One pass over the global batches of ``epoch``; its record (mean loss, images/s, peak memory)."""
    config, d = run.config, run.d
    torch.manual_seed(config.seed * 1_000_003 + epoch * 101 + d.rank)  # dropout: a function of the epoch
    run.data.epoch = epoch
    order = global_batch_order(len(run.data), config.batch_size, config.seed, epoch, d.rank, d.world)
    loader = DataLoader(run.data, batch_size=per_rank_batch(config.batch_size, d.world), sampler=order,
                        num_workers=config.workers, pin_memory=d.device.type == "cuda")
    set_train_mode(run.model, config.freeze_bn)
    started, loss_sum, steps = time.perf_counter(), 0.0, 0
    for x, y in loader:
        loss = _train_step(run, x, y)
        loss_sum, steps = loss_sum + loss, steps + 1
        bar.update()
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / steps:.4f}", lr=f"{run.scheduler.get_last_lr()[0]:.2e}")
    seconds = time.perf_counter() - started
    mean_loss = torch.tensor([loss_sum / max(steps, 1)])
    if d.world > 1:
        dist.all_reduce(mean_loss)
    global_loss = float(mean_loss) / d.world  # the processes' shares summed: the global batch's loss
    return dict(epoch=epoch + 1, train_loss=global_loss, seconds=seconds,
                images_per_s=steps * config.batch_size / max(seconds, 1e-9), peak_memory_mb=_peak_memory_mb(d))


def _train_step(run: _Run, x: torch.Tensor, y: torch.Tensor) -> float:
    d, amp_dtype = run.d, run.amp_dtype
    x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
    with torch.autocast(d.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        logits = run.model(x)
    loss = segmentation_loss(logits, y, run.config.loss == "balanced", run.masks.dataset.ignore_index, d.world)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.scheduler.step()
    return float(loss.detach())  # world x this process's share: its estimate of the global batch's loss


def _peak_memory_mb(d: Distributed) -> float:
    """Peak memory of this process: the GPU's allocator peak on CUDA, else the process's peak RSS."""
    if d.device.type == "cuda":
        return torch.cuda.max_memory_allocated(d.device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.no_grad()
def _validate(run: _Run) -> float:
    """mIoU (percent) of the segmenter's argmax on the val split at each image's own size, no labels used."""
    from .wsss.metrics import mean_iou

    assert run.val_set is not None
    model, data = unwrap(run.model), run.val_set
    model.eval()
    n = len(data) if run.config.max_val_images is None else min(run.config.max_val_images, len(data))
    confusion = ConfusionMatrix(len(data.class_names), data.ignore_index)
    for i in range(run.d.rank, n, run.d.world):
        gt = data.load_mask(i)
        x = image_to_batch(data.load_image(i), run.mean, run.std, device=run.d.device)
        logits = F.interpolate(model(x).float(), size=gt.shape, mode="bilinear", align_corners=False)
        confusion.update(logits.argmax(1)[0].cpu().numpy(), gt)
    return float(mean_iou(all_reduce_confusion(confusion.matrix)))


def _variant(run: _Run) -> str | None:
    """The backbone variant: the one its weights came with, else the one asked for."""
    return unwrap(run.model).backbone.pretrained_cfg.get("architecture") or run.config.model


def segmenter_meta(run: _Run, **extra: Any) -> dict[str, Any]:
    """The checkpoint metadata: classes, input settings, decoder, training recipe and the masks' provenance."""
    config, model = run.config, unwrap(run.model)
    variant = _variant(run)
    # The backbone's own input size, not the crop: crops are windows of images at their own scale, and
    # the predictor's short-side rule must show the segmenter images at the scale its backbone learnt.
    input_size = tuple(int(v) for v in model.pretrained_cfg.get("input_size", (3, config.crop_size, config.crop_size))[-2:])
    meta = CheckpointMeta(model=variant, classes=list(run.masks.dataset.class_names), head=HEAD_SEGMENTATION,
                          input_size=input_size, mean=tuple(run.mean), std=tuple(run.std),
                          extra={DECODER_META_KEY: config.decoder_config().to_dict(), "dataset": config.dataset,
                                 "training": config.to_dict(), "masks": run.masks.provenance(), **extra})
    return meta.to_mapping()


def _save_epoch(run: _Run, epoch: int) -> None:
    state = dict(model=unwrap(run.model).state_dict(), optimizer=run.optimizer.state_dict(),
                 scheduler=run.scheduler.state_dict(), epoch=epoch, history=run.history,
                 meta=segmenter_meta(run, epoch=epoch), config=run.config.to_dict())
    save_epoch_checkpoint(run.out, state, epoch, run.config.keep_epochs)


def _finish(run: _Run) -> dict[str, Any]:
    final = run.out / FINAL_CHECKPOINT
    if run.d.main:
        last = run.history[-1] if run.history else {}
        meta = segmenter_meta(run, epochs=run.config.epochs, val_miou=last.get("val_miou"))
        save_safetensors(unwrap(run.model).state_dict(), final, meta=meta)
        write_history(run.out, run.history)
    if run.d.world > 1:
        dist.barrier()
    return dict(history=run.history, checkpoint=str(final))

