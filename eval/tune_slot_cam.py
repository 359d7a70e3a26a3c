"""Re-check the slot-CAM recipe on a training split (the default was first chosen on 80 val images).

    python eval/tune_slot_cam.py [--images 300] [--split train] [--json OUT.json]

Each image runs the network once; every recipe (the variants of RESULTS.md's "How the default
slot-CAM recipe was chosen" table, plus neighbours of the default's CAM weight) computes its
evidence from the same forward pass, and eval's sweep (no CRF, ground-truth image labels) gives
its best background threshold. Prints a markdown table, best first.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from glmix_vis.data import open_dataset
from glmix_vis.data.scenes import root_or_default
from glmix_vis.loading import load_model
from glmix_vis.wsss.evidence import get_evidence_method
from glmix_vis.wsss.masks import DEFAULT_THRESHOLDS
from glmix_vis.wsss.pipeline import class_evidence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_sweep import sweep_variants  # noqa: E402

SLOTS_ONLY = dict(cam_weight=0.0)
#: name -> (method, slot-cam options); the first rows are the val table's, in its order.
RECIPES: dict[str, tuple[str, dict]] = {
    "plain CAM": ("cam", {}),
    "last-stage blocks, grouping weights, slots only": (
        "slot-cam", dict(blocks="last-stage", pool="grouping", contrast="none", **SLOTS_ONLY)),
    "block 0, grouping weights, slots only": ("slot-cam", dict(pool="grouping", contrast="none", **SLOTS_ONLY)),
    "block 0, dispatch weights, min-max, slots only": ("slot-cam", dict(**SLOTS_ONLY)),
    "same, all blocks averaged": ("slot-cam", dict(blocks="all", **SLOTS_ONLY)),
    "blocks 0-1 + geometric mean with the CAM": ("slot-cam", dict(blocks="0,1")),
    "all blocks + geometric mean with the CAM": ("slot-cam", dict(blocks="all")),
    "block 0 + geometric mean with the CAM (default)": ("slot-cam", {}),
    "block 0, linear mix, CAM weight 0.2": ("slot-cam", dict(cam_mix="linear", cam_weight=0.2)),
    "block 0, linear mix, CAM weight 0.3": ("slot-cam", dict(cam_mix="linear", cam_weight=0.3)),
    "block 0, linear mix, CAM weight 0.4": ("slot-cam", dict(cam_mix="linear", cam_weight=0.4)),
    "block 0, geometric, CAM weight 0.1": ("slot-cam", dict(cam_weight=0.1)),
    "block 0, geometric, CAM weight 0.2": ("slot-cam", dict(cam_weight=0.2)),
    "block 0, geometric, CAM weight 0.3": ("slot-cam", dict(cam_weight=0.3)),
    "block 0, geometric, CAM weight 0.4": ("slot-cam", dict(cam_weight=0.4)),
    "block 0, geometric, CAM weight 0.7": ("slot-cam", dict(cam_weight=0.7)),
    "block 0, geometric, product over blocks 0-1": ("slot-cam", dict(blocks="0,1", combine="product")),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", help="dataset root (default: the generated scenes)")
    p.add_argument("--split", default="train")
    p.add_argument("--checkpoint", help="default: the bundled demo model")
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    dataset = open_dataset("voc", root_or_default(args.root), args.split)
    model, info = load_model(args.checkpoint, device="cpu")
    methods = {name: get_evidence_method(m, class_map=info.class_map, **opts) for name, (m, opts) in RECIPES.items()}
    n = min(args.images, len(dataset))

    def variant_scores(image, x, slots, labels):
        return {name: class_evidence(method, model, x, image.shape[:2], slots=slots) for name, method in methods.items()}

    sweeps = sweep_variants(dataset, model, info, n, DEFAULT_THRESHOLDS, variant_scores)
    rows = [dict(recipe=name, options=RECIPES[name][1], best_miou=sweeps[name].best_miou,
                 best_threshold=sweeps[name].best_threshold) for name in methods]
    rows.sort(key=lambda r: -r["best_miou"])
    print(f"{n} images of {dataset.root} {args.split}, no CRF, each recipe at its best threshold\n")
    print("| recipe | mIoU | threshold |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['recipe']} | {r['best_miou']:.2f} | {r['best_threshold']:g} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
