"""``glmix-vis checkpoint``: inspect a checkpoint file, or convert it to a slim ``.safetensors``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ._dispatch import UserError

#: Training-config values worth showing (the authors' hydra names, then ours).
CONFIG_KEYS = ("model", "input_size", "drop_path", "lr", "blr", "epochs", "batch_size", "weight_decay",
               "opt", "model_ema", "model_ema_decay", "nb_classes", "data_set", "drop_path_rate")


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help="inspect or convert checkpoint files",
                              description="Inspect a checkpoint (official .pth, plain state dict or "
                                          ".safetensors), or convert it to a slim fp32 .safetensors with "
                                          "metadata that every command accepts.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    i = actions.add_parser("inspect", help="entries, variant, classes, epoch, EMA and training config")
    i.add_argument("file", help="checkpoint file, or a variant name looked up in $GLMIX_CHECKPOINT_DIR")
    i.add_argument("--json", action="store_true", help="print everything as JSON")
    c = actions.add_parser("convert", help="write the weights as a slim fp32 .safetensors with metadata")
    c.add_argument("file", help="checkpoint file, or a variant name looked up in $GLMIX_CHECKPOINT_DIR")
    c.add_argument("out", help="output file (.safetensors), written atomically")
    c.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                   help="take the EMA weights (default: EMA for glnet_16g, as the authors advise)")
    c.add_argument("--model", help="variant name (default: from the checkpoint's metadata or its weights)")
    c.add_argument("--classes", help="class names: a text file with one per line, or a JSON list")
    c.add_argument("--input-size", type=int, nargs="+", metavar="N", help="input size H [W] to record")
    c.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    return p


def run(args: argparse.Namespace) -> int:
    if args.action == "inspect":
        info = describe(args.file)
        print(json.dumps(info, indent=1, default=str) if args.json else format_description(info))
        return 0
    return _convert(args)


# ------------------------------------------------------------------------------------ inspect
def describe(file: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``inspect`` reports about a checkpoint, as plain data."""
    from ..models.checkpoints import (
        compare_signature,
        detect_variant,
        head_class_names,
        read_checkpoint,
        resolve_checkpoint,
        variant_buffers,
        variant_signature,
    )
    from ..models.glnet import MODEL_CONFIGS

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
    num_classes = int(sd["head.weight"].shape[0]) if "head.weight" in sd else 0
    return dict(
        file=str(path), size_bytes=path.stat().st_size, format=ckpt.format, entries=ckpt.entries,
        variant=variant, fits=fit.exact, closest=None if fit.exact else det.name, match=round(det.score, 4),
        differences=None if fit.exact else fit.describe_differences(),
        weights=entry, parameters=params, num_classes=num_classes,
        classes=head_class_names(ckpt.meta, num_classes), epoch=ckpt.epoch,
        ema=ckpt.has_ema, ema_entry=next((e for e in ckpt.weights if e in ("model_ema", "state_dict_ema", "ema")),
                                         None),
        dtypes=sorted({str(v.dtype).replace("torch.", "") for v in sd.values()}),
        meta=ckpt.meta, config=ckpt.config)


def format_description(info: dict[str, Any]) -> str:
    """The human-readable ``inspect`` report."""
    size = info["size_bytes"]
    lines = [f"file        {info['file']} ({_size(size)}, {info['format']})",
             "entries     " + ", ".join(f"{k} ({v})" for k, v in info["entries"].items())]
    if info["fits"]:
        lines.append(f"variant     {info['variant']} (exact fit)")
    else:
        lines.append(f"variant     {info['variant'] or 'unknown'}: the weights fit no registered variant; closest is "
                     f"{info['closest']} ({info['match']:.0%} of keys agree): {info['differences']}")
    lines.append(f"weights     {info['weights']} ({', '.join(info['dtypes'])})")
    lines.append(f"parameters  {info['parameters']:,}")
    classes = info["classes"]
    shown = "" if not classes else ": " + ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
    lines.append(f"classes     {info['num_classes']}{shown}")
    lines.append(f"epoch       {info['epoch'] if info['epoch'] is not None else '-'}")
    if info["ema"]:
        default = "default for this variant" if info["weights"] == info["ema_entry"] else "use --ema to take it"
        lines.append(f"EMA         yes ({info['ema_entry']}; {default})")
    else:
        lines.append("EMA         no")
    config = info["config"]
    values = [f"{k}={config[k]}" for k in CONFIG_KEYS if k in config]
    if values:
        lines.append("config      " + "  ".join(values))
    first = ("model", "num_classes", "input_size", "mean", "std")
    meta = info["meta"]
    keys = [k for k in first if k in meta] + sorted(k for k in meta if k not in first and k != "classes")
    if keys:
        lines.append("meta        " + "  ".join(f"{k}={meta[k]}" for k in keys))
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# ------------------------------------------------------------------------------------ convert
def _convert(args: argparse.Namespace) -> int:
    import timm

    from ..models.checkpoints import (
        compare_signature,
        head_class_names,
        read_checkpoint,
        resolve_checkpoint,
        save_safetensors,
        variant_signature,
    )
    from ..models.factory import checkpoint_variant
    from ..models.glnet import MODEL_CONFIGS, OFFICIAL_VARIANTS

    src = resolve_checkpoint(args.file)
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise UserError(f"the output must end in .safetensors, got {out}")
    if out.exists() and out.resolve() == src.resolve():
        raise UserError("the output would overwrite the input")
    if out.exists() and not args.force:
        raise UserError(f"{out} exists (use --force to overwrite)")
    if args.model and args.model not in MODEL_CONFIGS:
        raise UserError(f"unknown model {args.model!r}; choose one of {', '.join(MODEL_CONFIGS)}")

    ckpt = read_checkpoint(src)
    name = args.model or checkpoint_variant(ckpt)
    entry, sd = ckpt.select(args.ema, name)
    det = compare_signature({k: tuple(v.shape) for k, v in sd.items()}, variant_signature(name), name)
    if not det.exact:
        raise UserError(f"{src} [{entry}] does not fit {name}: {det.describe_differences()}")
    num_classes = det.num_classes or 0
    default_cfg = timm.models.get_pretrained_cfg(name)

    meta: dict[str, Any] = dict(ckpt.meta)
    classes = _read_classes(args.classes) if args.classes else None
    if classes is not None:
        if len(classes) != num_classes:
            raise UserError(f"{args.classes} lists {len(classes)} classes but the head has {num_classes}")
        meta.update(classes=classes, head="all")
    elif head_class_names(meta, num_classes) is None:
        meta.pop("classes", None)
        if num_classes == 1000 and name in OFFICIAL_VARIANTS:
            meta["classes"] = _imagenet_names()
    if args.input_size:
        if len(args.input_size) > 2:
            raise UserError("--input-size takes H or H W")
        meta["input_size"] = [args.input_size[0], args.input_size[-1]]
    elif not _pair(meta.get("input_size")):
        meta["input_size"] = list(default_cfg.input_size[1:]) if default_cfg else [224, 224]
    for key in ("mean", "std"):
        if not (isinstance(meta.get(key), list) and len(meta[key]) == 3):
            meta[key] = list(getattr(default_cfg, key)) if default_cfg else None
    meta.update(model=name, num_classes=num_classes, source=src.name, weights=entry)
    if ckpt.epoch is not None:
        meta["epoch"] = ckpt.epoch

    save_safetensors(sd, out, meta=meta)
    print(f"wrote {out} ({_size(out.stat().st_size)}): {name}, {entry} weights, {num_classes} classes, "
          f"input {meta['input_size'][0]}x{meta['input_size'][1]}")
    return 0


def _pair(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)


def _read_classes(file: str) -> list[str]:
    text = Path(file).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        names = json.loads(text)
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise UserError(f"{file}: expected a JSON list of class names")
        return names
    return [line.strip() for line in text.splitlines() if line.strip()]


def _imagenet_names() -> list[str]:
    """ImageNet-1k class names (first lemma of each synset), in the official class order."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0].strip() for i in range(1000)]
