"""Every evidence method x every refinement, on the same model and images, in one run (issue 15's table).

    python eval/bench_methods.py --out eval/_work/methods [--checkpoint CKPT]
        [--methods cam,slot-cam,gradcam,...] [--train-limit 300] [--val-limit N]
        [--tta] [--faithfulness-images 100] [--slow-limit 100]

For every method, at single scale and (with ``--tta``) with ``--scales 1.0,0.5,1.5 --flip``, and
for every refinement (none, PAR, slot random walk):

1. the background threshold is tuned on the *train* split (``glmix-wsss eval --split train
   --no-crf --sweep --refine R``, the first ``--train-limit`` images): the best swept threshold;
2. the *val* split is scored at that threshold, without and with the dense CRF
   (``glmix-wsss eval --split val --bg-threshold T --refine R``; the masks before the CRF are
   scored in the same pass), and, for the unrefined single-scale run, the faithfulness of the
   evidence (``--faithfulness``: ROAD and deletion/insertion AUC on ``--faithfulness-images``).

Every run is a ``glmix-wsss eval`` run (the code users run) in its own folder under OUT, so an
interrupted benchmark resumes. ``--slow-limit`` caps the images of the methods that run the
network once per channel (Score-CAM) on both splits; the table says where it applied. Seconds per
image come from the runs' own timing (evidence + refinement in ``forward``, CRF apart): they are
only comparable when nothing else ran on the machine. Writes OUT/table.md and OUT/summary.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from glmix_vis.data.scenes import DEFAULT_SCENES_DIR, ensure_scenes
from glmix_vis.wsss.evaluate import EvalConfig, evaluate
from glmix_vis.wsss.evidence import GRAD_CAM_METHODS
from glmix_vis.wsss.recipe import METHOD_TITLES, MaskRecipe
from glmix_vis.wsss.refinement import REFINEMENTS

PEERS = tuple(GRAD_CAM_METHODS)  # pytorch-grad-cam's methods, as the library registers them
DEFAULT_METHODS = ("cam", "slot-cam", *PEERS)
SLOW_METHODS = {"scorecam"}
TTA = dict(scales=(1.0, 0.5, 1.5), flip=True)


def _run(out: Path, **settings: Any) -> dict[str, Any]:
    """One eval run: the settings that are the recipe's go into its :class:`MaskRecipe`, the rest are the run's."""
    recipe_fields = {f.name for f in fields(MaskRecipe)}
    recipe = MaskRecipe(**{k: v for k, v in settings.items() if k in recipe_fields})
    config = EvalConfig(out=str(out), device="cpu", progress=False, recipe=recipe,
                        **{k: v for k, v in settings.items() if k not in recipe_fields})
    started = time.perf_counter()
    result = evaluate(config)
    result["bench_wall_s"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="eval/_work/methods")
    parser.add_argument("--root", default=None, help="dataset root (default: the generated scenes)")
    parser.add_argument("--checkpoint", default=None, help="default: the bundled demo checkpoint")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--refinements", default=",".join(REFINEMENTS))
    parser.add_argument("--train-limit", type=int, default=300, help="train images the thresholds are tuned on")
    parser.add_argument("--val-limit", type=int, default=None, help="val images scored (default: all)")
    parser.add_argument("--slow-limit", type=int, default=100, help="images per split for Score-CAM")
    parser.add_argument("--tta", action="store_true", help="also run every method with scales 1.0,0.5,1.5 + flip")
    parser.add_argument("--tta-methods", help="only these methods with --tta (default: all; Score-CAM's TTA "
                                              "runs the network about 7 times as often again)")
    parser.add_argument("--faithfulness-images", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None, help="CRF processes (default: eval's share of the cores)")
    parser.add_argument("--timing-images", type=int, default=30,
                        help="seconds per image from fresh val runs of this many images (Score-CAM: a third), after "
                             "the accuracy runs, on a machine doing nothing else; 0: none")
    args = parser.parse_args()
    root = args.root or str(ensure_scenes(DEFAULT_SCENES_DIR).parents[1])
    out = Path(args.out)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    refinements = [r.strip() for r in args.refinements.split(",") if r.strip()]
    augmentations = [("single", dict(scales=(1.0,), flip=False))] + ([("tta", TTA)] if args.tta else [])
    common = dict(root=root, checkpoint=args.checkpoint, workers=args.workers)

    summary: dict[str, Any] = {}
    for aug_name, aug in augmentations:  # every method at single scale first: the TTA half is the costly one
        for method in methods:
            if aug_name == "tta" and args.tta_methods and method not in args.tta_methods.split(","):
                continue
            slow = method in SLOW_METHODS
            for refinement in refinements:
                key = f"{method}/{aug_name}/{refinement}"
                train_limit = min(args.train_limit, args.slow_limit) if slow else args.train_limit
                val_limit = args.slow_limit if slow and args.slow_limit else args.val_limit
                tuned = _run(out / "tune" / method / aug_name / refinement, split="train", method=method,
                             limit=train_limit, crf=False, sweep=True, refinement=refinement, **aug, **common)
                threshold = tuned["threshold_sweep"]["best_threshold"]
                faithful = refinement == "none" and aug_name == "single" and args.faithfulness_images > 0
                scored = _run(out / "val" / method / aug_name / refinement, split="val", method=method,
                              limit=val_limit, crf=True, bg_threshold=threshold, refinement=refinement,
                              faithfulness=faithful, faithfulness_images=args.faithfulness_images, **aug, **common)
                summary[key] = dict(threshold=threshold, train_images=tuned["images"],
                                    train_best_miou=tuned["threshold_sweep"]["best_miou"],
                                    val_images=scored["images"], miou_nocrf=scored["nocrf"]["miou"],
                                    miou_crf=scored["miou"], timing=scored["timing"],
                                    faithfulness=scored.get("faithfulness"))
                print(f"{key}: threshold {threshold:.2f} (train {tuned['threshold_sweep']['best_miou']:.1f}) "
                      f"val {scored['nocrf']['miou']:.1f} / +CRF {scored['miou']:.1f}", flush=True)
                out.mkdir(parents=True, exist_ok=True)
                (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if args.timing_images:
        _time_cells(summary, out, common, augmentations, args)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    table = _table(summary, methods, augmentations, refinements, args)
    (out / "table.md").write_text(table)
    print(table)


def _time_cells(summary: dict[str, Any], out: Path, common: dict[str, Any], augmentations: list,
                args: argparse.Namespace) -> None:
    """Each scored cell again on the first val images, in a fresh folder (a resumed run times nothing),
    with its own threshold and the CRF: its seconds per image go to the cell's ``timing``."""
    for key, row in summary.items():
        method, aug_name, refinement = key.split("/")
        images = max(1, args.timing_images // 3) if method in SLOW_METHODS else args.timing_images
        folder = out / "timing" / key
        shutil.rmtree(folder, ignore_errors=True)
        result = _run(folder, split="val", method=method, limit=images, crf=True, bg_threshold=row["threshold"],
                      refinement=refinement, **dict(augmentations)[aug_name], **common)
        row["timing"] = dict(result["timing"], images=result["images"])
        print(f"{key}: {row['timing']['forward_s_per_image']:.3f} s/img evidence+refinement, "
              f"{row['timing']['crf_s_per_image']:.3f} s/img CRF ({images} images)", flush=True)


def _seconds(summary: dict[str, Any], key: str, field: str) -> str:
    """A run's seconds per image, "–" when absent or when the run computed nothing (resumed)."""
    timing = (summary.get(key) or {}).get("timing") or {}
    return f"{timing[field]:.3f}" if timing.get("images_computed") and field in timing else "–"


def _table(summary: dict[str, Any], methods: list[str], augmentations: list, refinements: list[str],
           args: argparse.Namespace) -> str:
    lines = [f"Generated scenes; thresholds tuned on the first {args.train_limit} train images, scored on val "
             f"({'all' if args.val_limit is None else args.val_limit} images); Score-CAM on {args.slow_limit} "
             f"images of each split. mIoU (%), bg threshold per refinement in brackets. Faithfulness: the first "
             f"{args.faithfulness_images} val images. Seconds per image: fresh runs on the first {args.timing_images} "
             f"val images (Score-CAM {max(1, args.timing_images // 3)}); evidence with the refinement, CRF apart "
             f"(one worker's seconds).", "",
             "| method | aug | none | +CRF | PAR | PAR+CRF | slot walk | slot walk+CRF | ROAD (combined) | "
             "deletion AUC ↓ | insertion AUC ↑ | s/img evidence | s/img +PAR | s/img +walk | s/img CRF |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for method in methods:
        for aug_name, _ in augmentations:
            cells = []
            for refinement in ("none", "par", "slot-walk"):
                key = f"{method}/{aug_name}/{refinement}"
                row = summary.get(key)
                if refinement not in refinements or row is None:
                    cells += ["–", "–"]
                    continue
                cells += [f"{row['miou_nocrf']:.1f} ({row['threshold']:.2f})", f"{row['miou_crf']:.1f}"]
            base = summary.get(f"{method}/{aug_name}/none") or {}
            f = base.get("faithfulness") or {}
            faith = [f"{f[k]:.3f}" if k in f else "–" for k in ("road_combined", "deletion_auc", "insertion_auc")]
            speed = [_seconds(summary, f"{method}/{aug_name}/{r}", "forward_s_per_image") for r in REFINEMENTS]
            speed.append(_seconds(summary, f"{method}/{aug_name}/none", "crf_s_per_image"))
            lines.append(f"| {METHOD_TITLES.get(method, method)} | {aug_name} | " + " | ".join(cells + faith + speed)
                         + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
