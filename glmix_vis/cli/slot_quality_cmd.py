"""``glmix-vis slot-quality``: object-discovery metrics of every GLMix block's slots over a split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._args import (
    add_dataset_arguments,
    add_device_argument,
    add_precision_argument,
    block_list,
    dataset_root,
    expand_inputs,
    positive_int,
)
from ._dispatch import UserError


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="FG-ARI, mBO and CorLoc of the slots of every GLMix block over a split",
        description="Score the hard slot partition of every GLMix block (the one the app and figures show) as "
                    "object discovery, with OCLF's definitions: FG-ARI, mBO^i, mBO^c, mask CorLoc and Hungarian "
                    "mIoU, for all slots and for the slots merged to --merge groups, plus the consistency of "
                    "adjacent blocks. Writes OUT/slot_quality.json, slot_quality.md and slot_quality.png/.pdf. "
                    "With --images instead of a dataset, only the consistency is scored (no ground truth).")
    add_dataset_arguments(p, split_help="split to score", split_default="val")
    p.add_argument("--images", nargs="+", metavar="PATH",
                   help="image files or folders without ground truth, instead of a dataset: consistency only")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--checkpoint", help="checkpoint file or name (default: the bundled demo model)")
    p.add_argument("--blocks", help="GLMix block indices, e.g. 0,2,-1 (default: all)")
    p.add_argument("--merge", type=int, default=None,
                   help="merge each image's slots into this many groups (default 6 for VOC, 7 for COCO; 0: off)")
    p.add_argument("--linkage", default="ward", choices=["ward", "average", "complete", "single"],
                   help="agglomerative linkage of the merge, on L2-normalised slot features (default ward)")
    p.add_argument("--input-size", type=positive_int,
                   help="short side the network sees (default: the image's own size, as eval)")
    p.add_argument("--limit", type=positive_int, help="only the first N images")
    add_device_argument(p)
    add_precision_argument(p)
    p.add_argument("--no-figure", action="store_true", help="write no figure")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _bare_images(files: list[Path]):
    from ..discovery.quality import GroundTruthImage
    from ..io import load_image

    for f in files:
        yield GroundTruthImage(f.stem, load_image(f))


def _open(args: argparse.Namespace):
    """The dataset, validated, with instance masks where they can be had."""
    from ..data import DatasetError, open_dataset
    from ..data.scenes import ensure_instance_masks

    ds = open_dataset(args.dataset, dataset_root(args.root, args.dataset), args.split)
    if args.dataset == "voc" and not ds.has_instances and ds.has_masks:
        try:  # a generated-scenes folder made before instance masks: write just those
            if ensure_instance_masks(ds.voc_dir, progress=not args.quiet):
                ds = open_dataset(args.dataset, ds.voc_dir, args.split)
        except DatasetError:
            print(f"{ds.voc_dir}: no SegmentationObject/ instance masks: FG-ARI, mBO^i, CorLoc and mIoU are "
                  f"skipped (mBO^c from the class masks only)", file=sys.stderr)
    indices = range(min(args.limit or len(ds), len(ds)))
    ds.validate(progress=not args.quiet, indices=indices)
    return ds


def run(args: argparse.Namespace) -> int:
    from ..discovery.merge import DEFAULT_MERGE
    from ..discovery.quality import dataset_images, slot_quality, write_slot_quality
    from ..predictor import SlotPredictor

    if args.merge is not None and args.merge < 0:
        raise UserError(f"--merge must be >= 0, got {args.merge}")
    blocks = block_list(args.blocks)
    merge = DEFAULT_MERGE[args.dataset] if args.merge is None else (args.merge or None)
    if args.images:
        files = expand_inputs(args.images)[:args.limit]
        images, total, num_classes = _bare_images(files), len(files), None
        meta = dict(dataset="images", split=", ".join(args.images))
    else:
        ds = _open(args)
        total = min(args.limit or len(ds), len(ds))
        images, num_classes = dataset_images(ds, total), ds.num_classes
        from ..data import dataset_title

        meta = dict(dataset=args.dataset, dataset_name=dataset_title(args.dataset, ds), root=str(ds.root),
                    split=ds.split)
    predictor = SlotPredictor.from_checkpoint(args.checkpoint, device=args.device, precision=args.precision)
    meta.update(model=predictor.info.name, checkpoint=str(predictor.info.checkpoint or "bundled"),
                input_size=args.input_size, linkage=args.linkage)
    try:
        report = slot_quality(predictor, images, blocks=blocks, merge=merge, linkage=args.linkage,
                              input_size=args.input_size, num_classes=num_classes, total=total,
                              progress=not args.quiet, meta=meta)
    except IndexError as exc:
        raise UserError(str(exc)) from exc
    written = write_slot_quality(report, args.out)
    if not args.no_figure:
        from ..figures.discovery import save_slot_quality_figure

        written += save_slot_quality_figure(report.to_dict(), args.out)
    print(report.to_markdown())
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
