"""``glmix-vis atlas``: one GLMix block's slots over a dataset, grouped into concepts, scored against CRAFT."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._args import (
    add_dataset_arguments,
    add_device_argument,
    add_precision_argument,
    dataset_root,
    non_negative_int,
    positive_int,
)
from ._dispatch import UserError


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="group every slot of one GLMix block over a dataset into concepts (a slot atlas)",
        description="Every used slot of every image of the split becomes one row (its features pooled over its "
                    "region, its slot vector, or both), grouped into --concepts concepts by streamed k-means "
                    "(bounded memory). Per concept: members, pixel share, class purity, importance per class "
                    "(concept deletion), typical crops. Scored against CRAFT (NMF on the same block's features, "
                    "same K and images): class purity, concept deletion / insertion AUC. Writes ATLAS/atlas.json, "
                    "ATLAS/index.html with ATLAS/crops/, and ATLAS/atlas.png/.pdf.")
    add_dataset_arguments(p, split_help="split", split_default="train")
    p.add_argument("--block", type=int, default=0, help="GLMix block index (default 0; negative counts from the end)")
    p.add_argument("--out", type=Path, required=True, help="output folder (ATLAS)")
    p.add_argument("--concepts", type=positive_int, default=16, help="number of concepts K (default 16)")
    p.add_argument("--features", default="contrast",
                   choices=["contrast", "evidence", "deep", "region", "slot", "both"],
                   help="a slot's row, pooled over its region: the final features and the stage before the last, "
                        "standardised over the image's slots (contrast, default: measured best), the head's class "
                        "logits (evidence), the final features (deep), the block stage's features (region); or its "
                        "slot vector (slot), or region and slot (both). CRAFT factorises the pixel features the "
                        "rows pool (the final ones for contrast, evidence and deep)")
    p.add_argument("--checkpoint", help="checkpoint file or name (default: the bundled demo model)")
    p.add_argument("--input-size", type=positive_int,
                   help="short side the network sees (default: the image's own size, as eval)")
    p.add_argument("--limit", type=positive_int, help="only the first N images")
    p.add_argument("--fidelity-images", type=non_negative_int, default=50,
                   help="images scored by concept deletion / insertion (default 50; 0: none)")
    p.add_argument("--examples", type=positive_int, default=6, help="typical crops per concept (default 6)")
    p.add_argument("--no-craft", action="store_true", help="skip the CRAFT baseline")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed of the k-means (default 0)")
    add_device_argument(p)
    add_precision_argument(p)
    p.add_argument("--no-figure", action="store_true", help="write no paper figure")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from ..data import open_dataset
    from ..discovery.atlas import AtlasConfig, build_atlas
    from ..discovery.gallery import write_gallery
    from ..discovery.quality import dataset_images
    from ..io import atomic_write_bytes
    from ..models.slots import resolve_blocks
    from ..predictor import SlotPredictor

    config = AtlasConfig(block=args.block, concepts=args.concepts, features=args.features, input_size=args.input_size,
                         examples=args.examples, fidelity_images=args.fidelity_images, craft=not args.no_craft,
                         seed=args.seed)
    ds = open_dataset(args.dataset, dataset_root(args.root, args.dataset), args.split)
    total = min(args.limit or len(ds), len(ds))
    ds.validate(progress=not args.quiet, indices=range(total))
    predictor = SlotPredictor.from_checkpoint(args.checkpoint, device=args.device, precision=args.precision)
    num_blocks = getattr(predictor.model, "num_glmix_blocks", 0)
    try:
        block = resolve_blocks(num_blocks, [args.block])[0]
    except IndexError as exc:
        raise UserError(str(exc)) from exc
    config = AtlasConfig(**{**config.__dict__, "block": block})
    meta = dict(model=predictor.info.name, checkpoint=str(predictor.info.checkpoint or "bundled"),
                dataset=args.dataset, root=str(ds.root), split=ds.split)
    atlas = build_atlas(predictor, lambda: dataset_images(ds, total), args.out, config,
                        class_names=ds.class_names if ds.has_masks else None, total=total,
                        progress=not args.quiet, meta=meta)
    atomic_write_bytes(args.out / "atlas.json", (json.dumps(atlas, indent=1) + "\n").encode())
    written = [args.out / "atlas.json", write_gallery(atlas, args.out)]
    if not args.no_figure:
        from ..figures.discovery import atlas_figure
        from ..figures.style import save_figure

        fig = atlas_figure(atlas, args.out)
        written += [save_figure(fig, args.out / "atlas.png"), save_figure(fig, args.out / "atlas.pdf")]
    pur, fid = atlas.get("purity") or {}, atlas["fidelity"]
    print(f"{atlas['images']} images, {atlas['slots']} slots -> {config.concepts} concepts; peak RSS "
          f"{atlas['peak_rss_mb']} MB")
    if pur:
        craft = (atlas.get("craft") or {}).get("purity")
        print(f"purity: atlas {pur['atlas']:.3f} (by index {pur['by_index']:.3f}, per slot {pur['per_slot']:.3f})"
              + (f", CRAFT {craft:.3f}" if craft is not None else ""))
    for name, row in fid.items():
        if row.get("deletion_auc") is not None:
            print(f"{name}: deletion AUC {row['deletion_auc']:.3f}, insertion AUC {row['insertion_auc']:.3f} "
                  f"({row['pairs']} image-class pairs)")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
