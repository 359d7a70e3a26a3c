"""Argument helpers shared by the subcommands: one parser per kind of value, one default rule."""

from __future__ import annotations

import argparse
import sys

from ._dispatch import UserError

__all__ = ["add_device_argument", "block_list", "dataset_root", "index_list", "number_list"]


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")


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


def index_list(text: str | None, option: str) -> list[int] | None:
    """Non-empty comma-separated integers (``--slots 3,7``), or None when the option is absent."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} must be comma-separated integers such as 3,7, got {text!r}") from None
    if not values:
        raise UserError(f"{option} is empty")
    return values


def number_list(text: str) -> list[float]:
    """argparse type: comma-separated numbers (``--scales 1.0,0.5,1.5``)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
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
