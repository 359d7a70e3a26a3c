"""Argument helpers shared by the subcommands: one parser per kind of value, one default rule."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._dispatch import UserError

__all__ = ["add_dataset_arguments", "add_device_argument", "add_precision_argument", "add_training_arguments", "auto_or_count", "auto_or_positive_int", "block_list",
           "dataset_root", "expand_inputs", "IMAGE_SUFFIXES", "model_name", "number_list", "positive_int", "non_negative_int", "positive_float", "non_negative_float", "print_dpi", "MAX_DPI",
           "probability", "positive_number_list"]


def _checked(kind: Callable[[str], float], test: Callable[[float], bool], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = _checked(int, lambda v: v >= 1, "a whole number >= 1")
non_negative_int = _checked(int, lambda v: v >= 0, "a whole number >= 0")
positive_float = _checked(float, lambda v: v > 0 and math.isfinite(v), "a number > 0")
non_negative_float = _checked(float, lambda v: v >= 0 and math.isfinite(v), "a number >= 0")
probability = _checked(float, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1")
#: A figure's resolution at most (print needs 300 to 600; 1200 dpi draws a double column 8280 pixels wide).
MAX_DPI = 1200
print_dpi = _checked(float, lambda v: 0 < v <= MAX_DPI, f"a resolution above 0 and at most {MAX_DPI} dpi")


def _or_auto(parse: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    """argparse type: ``auto`` (None: the program decides) or what ``parse`` accepts."""
    def parse_or_auto(text: str) -> Any:
        if text.strip().lower() == "auto":
            return None
        try:
            return parse(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"expected auto or {what}, got {text!r}") from None

    parse_or_auto.__name__ = f"auto or {what}"
    return parse_or_auto


auto_or_count = _or_auto(non_negative_int, "a whole number >= 0")
auto_or_positive_int = _or_auto(positive_int, "a whole number >= 1")


def _device(text: str) -> str:
    from ..device_names import check_device_name

    try:
        check_device_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def model_name(text: str) -> str:
    """argparse type: a GLNet variant name (read from the model table's source: no torch)."""
    from ._source import dict_keys

    names = dict_keys("glmix_vis.models.glnet", "MODEL_CONFIGS")
    if text not in names:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(names)})")
    return text


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", type=_device,
                   help="auto (CUDA when available), cpu, cuda, cuda:1 ... (default auto)")


def add_dataset_arguments(p: argparse.ArgumentParser, *, default: str | None = None,
                          split_help: str | None = None, split_default: str | None = None) -> None:
    """``--dataset``, ``--root`` and, given ``split_help``, ``--split``, alike in every command that
    reads a dataset. The formats and the default one are the data package's, read from its source
    (importing it imports numpy and PIL); ``default`` overrides that (a trainer's config). No
    ``--root`` is :func:`dataset_root`'s rule. The trainers pass no ``split_help``: they take
    ``--train-split`` and ``--val-split``. Without ``split_default``, ``split_help`` names the default."""
    from ._source import constant

    if default is None:
        default = constant("glmix_vis.data", "DEFAULT_DATASET_FORMAT")
    p.add_argument("--dataset", default=default, choices=constant("glmix_vis.data", "DATASET_FORMATS"),
                   help=f"dataset format (generated scenes use the VOC layout; default {default})")
    p.add_argument("--root", help="dataset root (default: the generated scenes, created if missing)")
    if split_help is not None:
        if split_default is not None:
            split_help = f"{split_help} (default {split_default})"
        p.add_argument("--split", default=split_default, help=split_help)


def add_training_arguments(p: argparse.ArgumentParser, defaults: Any) -> None:
    """The options both trainers (``train``, ``train-seg``) take, each default read from the trainer's
    config (``defaults``: its dataclass defaults, :func:`._source.dataclass_defaults`)."""
    d = defaults
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                   help=f"global batch size, the same for any process count (default {d.batch_size})")
    p.add_argument("--weight-decay", type=non_negative_float, default=d.weight_decay,
                   help=f"AdamW weight decay (default {d.weight_decay:g})")
    p.add_argument("--warmup-epochs", type=non_negative_float, default=d.warmup_epochs,
                   help=f"linear warm-up of the learning rate, in epochs (default {d.warmup_epochs:g})")
    p.add_argument("--workers", type=non_negative_int, default=d.workers,
                   help=f"data-loading processes, 0: in this process (default {d.workers})")
    add_device_argument(p)
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA (default: on)")
    p.add_argument("--max-train-images", type=positive_int,
                   help="use only the first N training images (smoke runs; default: all)")


def add_precision_argument(p: argparse.ArgumentParser) -> None:
    """``--precision``: the dtype of the network's forward passes (resolved by ``devices.resolve_precision``)."""
    from ..precisions import DEFAULT_PRECISION, PRECISIONS

    p.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS,
                   help="dtype of the network's forward passes under autocast (weights stay fp32; maps, evidence "
                        "and masks are computed in fp32): auto = bf16 on CUDA (fp16 on GPUs without bf16) and on "
                        f"CPUs with AVX512-BF16 or AMX, else fp32 (default {DEFAULT_PRECISION})")


def block_list(text: str | None, option: str = "--blocks") -> list[int] | None:
    """GLMix block indices from ``"0,2,-1"``; ``None`` or ``"all"``: every block."""
    from ..models.slots import parse_blocks

    if text is None:
        return None
    try:
        blocks = parse_blocks(text)
    except ValueError as exc:
        raise UserError(f"{option}: {exc}") from None
    return None if blocks is None else list(blocks)


def number_list(text: str) -> list[float]:
    """argparse type: comma-separated numbers (``--scales 1.0,0.5,1.5``)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def positive_number_list(text: str) -> list[float]:
    """argparse type: comma-separated numbers, each > 0 (scales)."""
    values = number_list(text)
    bad = [v for v in values if not (v > 0 and math.isfinite(v))]
    if bad:
        raise argparse.ArgumentTypeError(f"every value must be > 0, got {text!r}")
    return values


def dataset_root(root: str | None, dataset: str = "voc") -> str:
    """The dataset root to use: ``--root``, or the generated scenes (said before anything is written)."""
    from ..data.scenes import DEFAULT_SCENES_DIR, root_or_default

    if root is None:
        if dataset != "voc":
            raise UserError(f"--root is required for --dataset {dataset}")
        print(f"no --root: using the generated scenes in {DEFAULT_SCENES_DIR} (created on first use)",
              file=sys.stderr)
    return root_or_default(root)


#: The image files a folder given on the command line contributes.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Image files from files and folders (a folder's images, sorted, not recursive)."""
    images: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(f"{path}: no images in this folder (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            images.extend(found)
        elif path.exists():
            images.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    return images
