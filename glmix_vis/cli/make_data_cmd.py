"""``glmix-wsss make-data``: write the generated-scenes dataset in the PASCAL VOC layout."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ._dispatch import UserError


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _scene_size(text: str) -> int | tuple[int, int]:
    """``160`` (a square side) or ``375x500`` (height x width, VOC's typical landscape photo)."""
    parts = text.lower().replace(" ", "").split("x")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 32:
        raise argparse.ArgumentTypeError(f"expected a side such as 160 or HEIGHTxWIDTH such as 375x500, each "
                                         f"at least 32, got {text!r}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name,
        help="generate the synthetic shapes dataset (VOC layout)",
        description=(
            "Write a deterministic synthetic WSSS dataset (textured shapes on textured backgrounds) to "
            "OUT/VOCdevkit/VOC2012 with JPEG images, palette-PNG masks, XML annotations and split lists. "
            "Read it back with the VOC loader (dataset 'voc' or 'scenes'). A folder that already holds this "
            "very dataset (same settings and counts, complete) is left as it is."
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (gets VOCdevkit/VOC2012 inside)")
    p.add_argument("--train", type=_positive, default=2000, help="number of training images (default 2000)")
    p.add_argument("--val", type=_positive, default=300, help="number of validation images (default 300)")
    p.add_argument("--size", type=_scene_size, default=160,
                   help="image side in pixels, or HEIGHTxWIDTH: 375x500 is PASCAL VOC's typical landscape "
                        "photo (default 160, square)")
    p.add_argument("--seed", type=_positive, default=0, help="random seed (default 0)")
    p.add_argument(
        "--workers", type=_positive, default=None, help="worker processes (default: CPU count, max 8)"
    )
    p.add_argument("--force", action="store_true",
                   help="when --out holds a generated dataset made with other settings, or other files: replace "
                        "what the generator writes (VOCdevkit/VOC2012's JPEGImages, SegmentationClass, "
                        "SegmentationObject, Annotations, ImageSets, classes.json); anything else in --out is kept "
                        "(default: refuse)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from ..data.scenes import SceneConfig, complete_scenes, ensure_instance_masks, generate_scenes

    config = SceneConfig(size=args.size, seed=args.seed)
    there = complete_scenes(args.out, args.train, args.val, config)
    if there is not None:  # regenerating would rewrite identical files for minutes
        ensure_instance_masks(there, progress=not args.quiet)
        print(f"{there} already holds this dataset ({args.train} train + {args.val} val images, the same settings): "
              "nothing to do")
        return 0
    start = time.perf_counter()
    try:
        voc_dir = generate_scenes(
            args.out,
            args.train,
            args.val,
            config,
            workers=args.workers,
            force=args.force,
            progress=not args.quiet,
        )
    except FileExistsError as exc:
        raise UserError(str(exc)) from exc
    elapsed = time.perf_counter() - start
    print(f"wrote {args.train} train + {args.val} val images to {voc_dir} in {elapsed:.1f} s")
    return 0
