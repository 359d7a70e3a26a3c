"""Describing and converting checkpoint files (``glmix-vis checkpoint inspect|convert`` print these)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoints import (
    CheckpointError,
    check_finite,
    compare_signature,
    first_non_finite,
    head_size,
    read_checkpoint,
    resolve_checkpoint,
    save_safetensors,
)
from .glnet import MODEL_CONFIGS
from .meta import HEAD_ALL, CheckpointMeta
from .variants import checkpoint_variant, detect_variant, variant_buffers, variant_signature

__all__ = ["ConvertResult", "convert_checkpoint", "describe_checkpoint", "read_class_names"]


def describe_checkpoint(file: str | os.PathLike[str]) -> dict[str, Any]:
    """What a checkpoint holds, as plain data: entries, variant and fit, weights, classes, EMA, config."""
    path = resolve_checkpoint(file)
    ckpt = read_checkpoint(path)
    named = ckpt.meta.get("model")
    _, plain = ckpt.select()
    det = detect_variant(plain, require_exact=False)
    variant = named if named in MODEL_CONFIGS else (det.name if det.exact else None)
    entry, sd = ckpt.select(None, variant)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    fit = compare_signature(shapes, variant_signature(variant), variant) if variant else det
    buffers = variant_buffers(variant) if fit.exact and variant else frozenset()
    params = sum(v.numel() for k, v in sd.items() if k not in buffers and v.is_floating_point()
                 and not k.endswith(("running_mean", "running_var")))
    num_classes = head_size(sd)
    non_finite = first_non_finite(sd)
    return dict(
        file=str(path), size_bytes=path.stat().st_size, format=ckpt.format, entries=ckpt.entries,
        variant=variant, fits=fit.exact, closest=None if fit.exact else det.name, match=round(det.score, 4),
        differences=None if fit.exact else fit.describe_differences(),
        non_finite=None if non_finite is None else non_finite[0],
        weights=entry, parameters=params, num_classes=num_classes,
        classes=CheckpointMeta.from_mapping(ckpt.meta).head_class_names(num_classes), epoch=ckpt.epoch,
        ema=ckpt.has_ema, ema_entry=ckpt.ema_entry,
        dtypes=sorted({str(v.dtype).replace("torch.", "") for v in sd.values()}),
        meta=ckpt.meta, config=ckpt.config)


def read_class_names(file: str | os.PathLike[str]) -> list[str]:
    """Class names from a text file (one per line) or a JSON list; any failure names the file."""
    try:
        text = Path(file).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{file}: not a text file (expected class names, one per line, or a JSON list)") from None
    except OSError as exc:
        raise ValueError(f"{file}: cannot read class names ({exc.strerror or exc})") from None
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except (ValueError, RecursionError):
            names = None
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ValueError(f"{file}: expected a JSON list of class names")
        return names
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass
class ConvertResult:
    path: Path
    model: str
    entry: str
    num_classes: int
    meta: CheckpointMeta


def convert_checkpoint(src: str | os.PathLike[str], out: str | os.PathLike[str], *, model: str | None = None,
                       ema: bool | None = None, classes: list[str] | None = None,
                       input_size: tuple[int, int] | None = None, force: bool = False) -> ConvertResult:
    """Write ``src``'s weights as a slim fp32 ``.safetensors`` with metadata every command reads.

    ``classes`` names every head output; without it, names already in the file are kept. An
    official 1000-class head needs none: loading reads it through the ImageNet-to-VOC map and
    names its outputs from timm's ImageNet metadata.
    """
    import timm

    path = resolve_checkpoint(src)
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"the output must end in .safetensors, got {out}")
    if out.exists() and out.resolve() == path.resolve():
        raise ValueError("the output would overwrite the input")
    if out.exists() and not force:
        raise ValueError(f"{out} exists (use --force to overwrite)")
    if not out.parent.is_dir():
        raise ValueError(f"{out}: the folder {out.parent} does not exist; create it first")
    if input_size is not None and min(int(v) for v in input_size) < 1:
        raise ValueError(f"input_size must be positive, got {tuple(input_size)}")
    if model and model not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODEL_CONFIGS)}")

    ckpt = read_checkpoint(path)
    name = model or checkpoint_variant(ckpt)
    entry, sd = ckpt.select(ema, name)
    det = compare_signature({k: tuple(v.shape) for k, v in sd.items()}, variant_signature(name), name)
    if not det.exact:
        raise CheckpointError(f"{path} [{entry}] does not fit {name}: {det.describe_differences()}")
    check_finite(sd, f"{path} [{entry}]")
    num_classes = det.num_classes or 0
    default_cfg = timm.models.get_pretrained_cfg(name)

    meta = CheckpointMeta.from_mapping(ckpt.meta)
    if classes is not None:
        if len(classes) != num_classes:
            raise ValueError(f"{len(classes)} class names given but the head has {num_classes} outputs")
        meta.classes, meta.head = list(classes), HEAD_ALL
    elif meta.head_class_names(num_classes) is None:
        meta.classes = None
    if input_size is not None:
        meta.input_size = (int(input_size[0]), int(input_size[-1]))
    elif meta.input_size is None:
        meta.input_size = tuple(default_cfg.input_size[1:]) if default_cfg else (224, 224)
    meta.mean = meta.mean or (tuple(default_cfg.mean) if default_cfg else None)
    meta.std = meta.std or (tuple(default_cfg.std) if default_cfg else None)
    meta.model = name
    meta.extra.update(num_classes=num_classes, source=path.name, weights=entry)
    if ckpt.epoch is not None:
        meta.extra["epoch"] = ckpt.epoch
    save_safetensors(sd, out, meta=meta.to_mapping())
    return ConvertResult(out, name, entry, num_classes, meta)
