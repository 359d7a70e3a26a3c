"""``glmix-wsss eval``: pseudo-masks from class evidence, refined and scored."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..wsss.crf import CRFParams
from ..wsss.evaluate import ORACLE_METHOD, EvalConfig, evaluate
from ..wsss.evidence import available_evidence_methods
from ..wsss.masks import DEFAULT_BG_THRESHOLD
from ._args import (
    add_device_argument,
    dataset_root,
    non_negative_int,
    positive_int,
    positive_number_list,
    probability,
)
from ._dispatch import UserError

_DEFAULT_CRF = CRFParams()


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    methods = available_evidence_methods() + [ORACLE_METHOD]
    p = subparsers.add_parser(
        name, help="score WSSS pseudo-masks (mIoU)",
        description="Class evidence -> pseudo-masks restricted to the image's ground-truth classes -> dense "
                    "CRF -> palette PNGs in OUT/masks and OUT/metrics.json (+ metrics.md). The split's ground "
                    "truth is checked first; every problem is listed and nothing is computed. Re-running with "
                    "the same OUT resumes. With no --root: the generated scenes' val split with the bundled "
                    "checkpoint. Sharded: torchrun --nproc_per_node N -m glmix_vis.cli.wsss eval ...")
    p.add_argument("--dataset", default="voc", choices=["voc", "coco"])
    p.add_argument("--root", help="dataset root (default: the generated scenes, created if missing)")
    p.add_argument("--split", help="split (default: train with --root, val for the generated scenes); "
                                   "mmseg's 'aug' is train_aug")
    p.add_argument("--checkpoint", help="checkpoint file or name (default: the bundled demo model)")
    p.add_argument("--method", default="slot-cam", choices=methods,
                   help=f"class evidence; {ORACLE_METHOD} labels each slot with its majority ground-truth class")
    p.add_argument("--slot-blocks", help="slot-cam: GLMix blocks to use, e.g. '-1' or '0,1,2' or 'all'")
    p.add_argument("--slot-combine", choices=["mean", "product", "max"], help="slot-cam: how blocks combine")
    p.add_argument("--oracle-block", type=int, default=-1, help=f"{ORACLE_METHOD}: which GLMix block")
    p.add_argument("--out", default="runs/eval", help="output folder")
    p.add_argument("--bg-threshold", type=probability, default=None,
                   help="background when no allowed class scores above this (default: the value the "
                        f"checkpoint records for the method, tuned on its training split; else {DEFAULT_BG_THRESHOLD})")
    p.add_argument("--sweep", action="store_true", help="also sweep the background threshold (reports the best)")
    p.add_argument("--crf", dest="crf", action="store_true", default=True, help="dense CRF refinement (default)")
    p.add_argument("--no-crf", dest="crf", action="store_false")
    p.add_argument("--crf-iterations", type=positive_int, default=_DEFAULT_CRF.iterations)
    p.add_argument("--crf-bilateral-sxy", type=float, default=_DEFAULT_CRF.bilateral_sxy)
    p.add_argument("--crf-bilateral-srgb", type=float, default=_DEFAULT_CRF.bilateral_srgb)
    p.add_argument("--crf-bilateral-compat", type=float, default=_DEFAULT_CRF.bilateral_compat)
    p.add_argument("--crf-gaussian-sxy", type=float, default=_DEFAULT_CRF.gaussian_sxy)
    p.add_argument("--crf-gaussian-compat", type=float, default=_DEFAULT_CRF.gaussian_compat)
    p.add_argument("--scales", type=positive_number_list, default=[1.0], help="test-time scales, e.g. 1.0,0.5,1.5")
    p.add_argument("--flip", action="store_true", help="add horizontally flipped inputs")
    p.add_argument("--input-size", type=positive_int, help="short side the network sees (default: the image's own size)")
    p.add_argument("--labels", choices=["gt", "pred"], default="gt",
                   help="restrict masks to ground-truth image labels (the WSSS protocol) or predicted ones")
    p.add_argument("--workers", type=non_negative_int, default=2, help="CRF worker processes")
    p.add_argument("--limit", type=positive_int, help="only the first N images")
    add_device_argument(p)
    return p


def run(args: argparse.Namespace) -> int:
    split = args.split or ("train" if args.root else "val")
    root = dataset_root(args.root, args.dataset)
    options = {}
    if args.slot_blocks:
        options["blocks"] = args.slot_blocks
    if args.slot_combine:
        options["combine"] = args.slot_combine
    if options and args.method != "slot-cam":
        raise UserError("--slot-blocks/--slot-combine apply to --method slot-cam only")
    crf = CRFParams(iterations=args.crf_iterations, gaussian_sxy=args.crf_gaussian_sxy,
                    gaussian_compat=args.crf_gaussian_compat, bilateral_sxy=args.crf_bilateral_sxy,
                    bilateral_srgb=args.crf_bilateral_srgb, bilateral_compat=args.crf_bilateral_compat)
    config = EvalConfig(out=args.out, dataset=args.dataset, root=root, split=split,
                        checkpoint=args.checkpoint, method=args.method, method_options=options,
                        bg_threshold=args.bg_threshold, sweep=args.sweep, crf=args.crf, crf_params=crf,
                        scales=args.scales, flip=args.flip, input_size=args.input_size, labels=args.labels,
                        device=args.device, workers=args.workers, limit=args.limit, oracle_block=args.oracle_block)
    result = evaluate(config)
    if result:
        summary = {k: result[k] for k in ("miou",) if k in result}
        if "nocrf" in result:
            summary["miou_nocrf"] = result["nocrf"]["miou"]
        if "threshold_sweep" in result:
            summary["best_bg_threshold"] = result["threshold_sweep"]["best_threshold"]
            summary["best_miou_nocrf"] = result["threshold_sweep"]["best_miou"]
        print(json.dumps(summary))
        print(f"wrote {Path(args.out) / 'metrics.json'}")
    return 0
