"""Choose the slot random walk's defaults on a training split: a small grid search, no CRF, every
variant at its best background threshold (the refined evidence swept, as ``glmix-wsss eval --sweep``
does).

    python eval/tune_slot_walk.py --images 300 --blocks 0 0,1 --radius 3 5 8 --power 2 4 8 --steps 4 8 16

Each image runs the network once; every variant refines the same evidence through the same code
as eval (:class:`~glmix_vis.wsss.refinement.Refinement`, then eval's sweep,
:func:`~glmix_vis.wsss.masks.sweep_confusions`). Prints a markdown table, best first; ``--json``
keeps it.
"""

from __future__ import annotations

import argparse
import itertools
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
from glmix_vis.wsss.refinement import get_refinement

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_sweep import sweep_variants  # noqa: E402


def _variants(args: argparse.Namespace) -> dict[str, dict]:
    out = {"none": {}}
    for blocks, combine, radius, power, steps, top_k, residual in itertools.product(
            args.blocks, args.combine, args.radius, args.power, args.steps, args.top_k, args.residual):
        opts = dict(blocks=blocks, combine=combine, radius=radius, power=power, steps=steps, top_k=top_k,
                    residual=residual)
        out[json.dumps(opts)] = opts
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", help="dataset root (default: the generated scenes)")
    p.add_argument("--split", default="train")
    p.add_argument("--checkpoint", help="default: the bundled demo model")
    p.add_argument("--method", default="slot-cam")
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--blocks", nargs="+", default=["0"])
    p.add_argument("--combine", nargs="+", default=["mean"], choices=["mean", "product"])
    p.add_argument("--radius", nargs="+", type=float, default=[5.0])
    p.add_argument("--power", nargs="+", type=float, default=[8.0])
    p.add_argument("--steps", nargs="+", type=int, default=[8])
    p.add_argument("--top-k", nargs="+", type=int, default=[0])
    p.add_argument("--residual", nargs="+", type=lambda t: t.lower() in ("1", "true", "yes"), default=[False])
    p.add_argument("--thresholds", nargs="+", type=float, default=list(DEFAULT_THRESHOLDS),
                   help="background thresholds swept (default 0.05, 0.10, ..., 0.95)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (small ops: 1 is best on a busy machine)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    dataset = open_dataset("voc", root_or_default(args.root), args.split)
    model, info = load_model(args.checkpoint, device="cpu")
    method = get_evidence_method(args.method, class_map=info.class_map)
    variants = _variants(args)
    refinements = {k: get_refinement("slot-walk" if v else "none", v) for k, v in variants.items()}
    thresholds = list(args.thresholds)
    n = min(args.images, len(dataset))

    def variant_scores(image, x, slots, labels):
        scores = class_evidence(method, model, x, image.shape[:2], slots=slots)
        return {key: scores if refinement.is_identity else refinement(scores, labels, slots=slots)
                for key, refinement in refinements.items()}

    sweeps = sweep_variants(dataset, model, info, n, thresholds, variant_scores)
    rows = [dict(options=opts, best_miou=sweeps[key].best_miou, best_threshold=sweeps[key].best_threshold)
            for key, opts in variants.items()]
    rows.sort(key=lambda r: -r["best_miou"])
    print(f"{n} images of {dataset.root} {args.split}, {args.method}, no CRF, best of thresholds "
          f"{', '.join(f'{t:g}' for t in thresholds)} for each\n")
    print("| blocks | combine | radius | power | steps | top_k | residual | mIoU | threshold |\n"
          "|---|---|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        o = r["options"]
        if not o:
            print(f"| (no refinement) | | | | | | | {r['best_miou']:.2f} | {r['best_threshold']} |")
            continue
        print(f"| {o['blocks']} | {o['combine']} | {o['radius']:g} | {o['power']:g} | {o['steps']} | {o['top_k']} | "
              f"{o['residual']} | {r['best_miou']:.2f} | {r['best_threshold']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(images=n, split=args.split, rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
