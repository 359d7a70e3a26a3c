"""``glmix-vis checkpoint``: inspect a checkpoint file, or convert it to a slim ``.safetensors``."""

from __future__ import annotations

import argparse
import json
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
        from ..models.convert import describe_checkpoint

        info = describe_checkpoint(args.file)
        print(json.dumps(info, indent=1, default=str) if args.json else format_description(info))
        return 0
    return _convert(args)


# ------------------------------------------------------------------------------------ inspect
def format_description(info: dict[str, Any]) -> str:
    """The human-readable ``inspect`` report."""
    size = info["size_bytes"]
    lines = [f"file        {info['file']} ({_size(size)}, {info['format']})",
             "entries     " + ", ".join(f"{k} ({v})" for k, v in info["entries"].items())]
    bad = info.get("non_finite")
    if info["fits"] and bad:
        lines.append(f"variant     {info['variant']} (keys and shapes fit, but {bad} holds non-finite values "
                     "(NaN or Inf): every command refuses these weights)")
    elif info["fits"]:
        lines.append(f"variant     {info['variant']} (exact fit)")
    else:
        lines.append(f"variant     {info['variant'] or 'unknown'}: the weights fit no registered variant; closest is "
                     f"{info['closest']} ({info['match']:.0%} of keys agree): {info['differences']}")
    lines.append(f"weights     {info['weights']} ({', '.join(info['dtypes'])})")
    lines.append(f"parameters  {info['parameters']:,}")
    lines.append(f"classes     {info['num_classes']}{_classes_note(info)}")
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


def _classes_note(info: dict[str, Any]) -> str:
    """The head's class names as listed, or what the class-name rule makes of the head."""
    from ..data.labels import LabelSpace
    from ..models.meta import CheckpointMeta

    classes = info["classes"]
    if classes:
        return ": " + ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
    try:
        labels = LabelSpace.from_checkpoint(CheckpointMeta.from_mapping(info["meta"]), info["num_classes"])
    except ValueError as exc:
        return f" ({exc})"
    if labels.source == "imagenet":
        return " (ImageNet-1k; read as the PASCAL VOC classes through the ImageNet-to-VOC map)"
    return ""


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# ------------------------------------------------------------------------------------ convert
def _convert(args: argparse.Namespace) -> int:
    from ..models.convert import convert_checkpoint, read_class_names

    if args.input_size and len(args.input_size) > 2:
        raise UserError("--input-size takes H or H W")
    if args.input_size and min(args.input_size) < 1:
        raise UserError(f"--input-size must be positive, got {' '.join(map(str, args.input_size))}")
    classes = read_class_names(args.classes) if args.classes else None
    size = (args.input_size[0], args.input_size[-1]) if args.input_size else None
    result = convert_checkpoint(args.file, args.out, model=args.model, ema=args.ema, classes=classes,
                                input_size=size, force=args.force)
    h, w = result.meta.input_size or (0, 0)
    print(f"wrote {result.path} ({_size(result.path.stat().st_size)}): {result.model}, {result.entry} weights, "
          f"{result.num_classes} classes, input {h}x{w}")
    return 0
