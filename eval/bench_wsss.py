"""WSSS on the generated scenes, every method side by side in one run (issue 4's table).

    python eval/bench_wsss.py --out eval/_work/wsss [--checkpoint CKPT] [--split val] [--limit N]
                              [--scales 1.0,0.5,1.5 --flip]

Runs ``cam`` and ``slot-cam`` (each with the dense CRF; the masks before the CRF are scored in
the same pass), the slot oracle of every GLMix block (each slot labelled with its majority
ground-truth class: the ceiling a perfect slot classifier would reach), and writes a Markdown
table with mIoU and seconds per image to ``OUT/table.md`` and ``OUT/summary.json``. Both
methods use the background threshold the checkpoint records (tuned on the train split by
``eval/tune_bg_thresholds.py``), or 0.15; the sweep column shows what the best one on the scored
split would have given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from glmix_vis.data.scenes import DEFAULT_SCENES_DIR, ensure_scenes
from glmix_vis.loading import load_model
from glmix_vis.wsss.evaluate import EvalConfig, evaluate
from glmix_vis.wsss.recipe import ORACLE_METHOD, MaskRecipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="eval/_work/wsss")
    parser.add_argument("--root", default=None, help="dataset root (default: the generated scenes)")
    parser.add_argument("--checkpoint", default=None, help="default: the bundled demo checkpoint")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2, help="CRF processes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="delete OUT first (no resume)")
    parser.add_argument("--scales", default="1.0", help="test-time scales for both methods, e.g. 1.0,0.5,1.5")
    parser.add_argument("--flip", action="store_true", help="add flipped inputs (test-time augmentation)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.root or str(ensure_scenes(DEFAULT_SCENES_DIR).parents[1])
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    model, _ = load_model(args.checkpoint, device="cpu")
    num_blocks = model.num_glmix_blocks

    scales = tuple(float(v) for v in args.scales.split(",") if v.strip())
    runs: dict[str, EvalConfig] = {}
    for method in ("cam", "slot-cam"):
        runs[method] = EvalConfig(out=str(out / method), root=root, split=args.split, checkpoint=args.checkpoint,
                                  recipe=MaskRecipe(method, crf=True, scales=scales, flip=args.flip), sweep=True,
                                  workers=args.workers, limit=args.limit, device="cpu")
    results, rows = {}, []
    for name, config in runs.items():
        started = time.perf_counter()
        r = evaluate(config)
        results[name] = r
        t = r["timing"]
        rows.append((name, r["settings"]["bg_threshold"], r["nocrf"]["miou"], r["miou"], r["threshold_sweep"]["best_threshold"],
                     r["threshold_sweep"]["best_miou"], t["forward_s_per_image"], t["crf_s_per_image"],
                     (time.perf_counter() - started) / max(r["images"], 1)))
    oracle_rows = []
    for block in range(num_blocks):
        config = EvalConfig(out=str(out / f"oracle_block{block}"), root=root, split=args.split,
                            checkpoint=args.checkpoint, recipe=MaskRecipe(ORACLE_METHOD, method_options={"block": block}),
                            limit=args.limit, device="cpu")
        results[f"oracle_block{block}"] = r = evaluate(config)
        oracle_rows.append((block, r["miou"]))

    lines = [f"Generated scenes, split `{args.split}`, {results['cam']['images']} images, checkpoint "
             f"`{results['cam']['settings']['checkpoint']}`, scales {list(scales)}{', flip' if args.flip else ''}.", "",
             "| method | bg threshold (checkpoint's, tuned on train) | mIoU (no CRF) | mIoU (+CRF) | "
             "best bg threshold on this split | mIoU at that threshold (no CRF) | forward s/img | CRF s/img | "
             "whole eval s/img |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, used, raw, crf, thr, best, fwd, crf_s, total in rows:
        lines.append(f"| `{name}` | {used:.2f} | {raw:.1f} | {crf:.1f} | {thr:.2f} | {best:.1f} | {fwd:.3f} | "
                     f"{crf_s:.3f} | {total:.3f} |")
    lines += ["", "| slot oracle (perfect slot classifier) | mIoU |", "|---|---:|"]
    lines += [f"| GLMix block {b} | {m:.1f} |" for b, m in oracle_rows]
    table = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table)
    (out / "summary.json").write_text(json.dumps({k: {"miou": v["miou"], "nocrf": v.get("nocrf"),
                                                      "timing": v["timing"]} for k, v in results.items()},
                                                 indent=1))
    print(table)


if __name__ == "__main__":
    main()
