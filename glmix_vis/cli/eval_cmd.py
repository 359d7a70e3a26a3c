"""``glmix-wsss eval``: pseudo-masks from class evidence, refined and scored."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..wsss.crf import CRFParams
from ..wsss.evaluate import ORACLE_METHOD, EvalConfig, evaluate
from ..wsss.evidence import GRAD_CAM_METHODS, available_evidence_methods
from ..wsss.masks import DEFAULT_BG_THRESHOLD
from ..wsss.par import PARParams
from ..wsss.refinement import REFINEMENTS
from ..wsss.scheduling import DEFAULT_BATCH_SIZE
from ..wsss.slot_walk import DEFAULT_SLOT_WALK
from ._args import (
    add_device_argument,
    add_precision_argument,
    auto_or_count,
    auto_or_positive_int,
    dataset_root,
    non_negative_int,
    positive_float,
    positive_int,
    positive_number_list,
    probability,
)
from ._dispatch import UserError

_DEFAULT_CRF = CRFParams()
_DEFAULT_PAR = PARParams()
#: --option -> (refinement, its option name)
_REFINE_ARGS = {"--walk-blocks": ("slot-walk", "blocks"), "--walk-steps": ("slot-walk", "steps"),
                "--walk-power": ("slot-walk", "power"), "--walk-radius": ("slot-walk", "radius"),
                "--walk-top-k": ("slot-walk", "top_k"),
                "--par-iterations": ("par", "iterations"), "--par-downscale": ("par", "downscale")}


def _blocks_text(blocks: str | tuple[int, ...]) -> str:
    return blocks if isinstance(blocks, str) else ",".join(str(b) for b in blocks)


def _refinement_options(args: argparse.Namespace) -> dict[str, object]:
    """The options of ``--refine`` from its ``--walk-*``/``--par-*`` arguments (others refused)."""
    options = {}
    for flag, (refinement, name) in _REFINE_ARGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is None:
            continue
        if args.refine != refinement:
            raise UserError(f"{flag} applies to --refine {refinement} only")
        options[name] = value
    return options


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
    p.add_argument("--target-layers", metavar="NAMES",
                   help=f"{'/'.join(GRAD_CAM_METHODS)}: comma-separated target modules as in "
                        "model.named_modules(), e.g. 'norm' or 'stages.2,stages.3' (default: the measured one)")
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
    p.add_argument("--refine", choices=list(REFINEMENTS), default="none",
                   help="refine the class evidence before the threshold (and the CRF): par (AFA's pixel-adaptive "
                        "refinement along colours) or slot-walk (a random walk along the GLMix slot maps)")
    p.add_argument("--walk-blocks", help="slot-walk: GLMix blocks whose slot affinities it walks, e.g. '0' or '0,1' "
                                         f"(default {_blocks_text(DEFAULT_SLOT_WALK.blocks)})")
    p.add_argument("--walk-steps", type=non_negative_int,
                   help=f"slot-walk: random-walk steps (default {DEFAULT_SLOT_WALK.steps})")
    p.add_argument("--walk-power", type=positive_float,
                   help=f"slot-walk: power of the slot affinity, higher is sharper (default {DEFAULT_SLOT_WALK.power:g})")
    p.add_argument("--walk-radius", type=positive_float,
                   help=f"slot-walk: link cells at most this many grid cells apart (default {DEFAULT_SLOT_WALK.radius:g})")
    p.add_argument("--walk-top-k", type=non_negative_int,
                   help=f"slot-walk: keep each pixel's K strongest affinities, 0 all (default {DEFAULT_SLOT_WALK.top_k})")
    p.add_argument("--par-iterations", type=non_negative_int, help=f"par: iterations (default {_DEFAULT_PAR.iterations})")
    p.add_argument("--par-downscale", type=positive_int,
                   help=f"par: run at 1/N of the image size (default {_DEFAULT_PAR.downscale}, as AFA)")
    p.add_argument("--scales", type=positive_number_list, default=[1.0], help="test-time scales, e.g. 1.0,0.5,1.5")
    p.add_argument("--flip", action="store_true", help="add horizontally flipped inputs")
    p.add_argument("--input-size", type=positive_int, help="short side the network sees (default: the image's own size)")
    p.add_argument("--labels", choices=["gt", "pred"], default="gt",
                   help="restrict masks to ground-truth image labels (the WSSS protocol) or predicted ones")
    p.add_argument("--workers", type=auto_or_count, default=None, metavar="N|auto",
                   help="CRF worker processes, 0: in this process (default auto: every core but one beside a GPU, "
                        "half of them beside a CPU network)")
    p.add_argument("--threads", type=auto_or_positive_int, default=None, metavar="N|auto",
                   help="torch threads of the network (default auto: the cores the CRF workers leave)")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                   help="consecutive images of one size per forward pass; above 1 float rounding may flip a rare "
                        f"boundary pixel (default {DEFAULT_BATCH_SIZE}: one image at a time)")
    p.add_argument("--limit", type=positive_int, help="only the first N images")
    p.add_argument("--faithfulness", action="store_true",
                   help="also score the evidence's faithfulness (ROAD, deletion/insertion AUC) on the images' "
                        "ground-truth classes; costly, see --faithfulness-images")
    p.add_argument("--faithfulness-images", type=positive_int, default=100,
                   help="faithfulness: the first N images of the run (default 100)")
    add_device_argument(p)
    add_precision_argument(p)
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
    if args.target_layers:
        if args.method not in GRAD_CAM_METHODS:
            raise UserError(f"--target-layers applies to --method {'/'.join(GRAD_CAM_METHODS)} only")
        options["target_layers"] = args.target_layers
    crf = CRFParams(iterations=args.crf_iterations, gaussian_sxy=args.crf_gaussian_sxy,
                    gaussian_compat=args.crf_gaussian_compat, bilateral_sxy=args.crf_bilateral_sxy,
                    bilateral_srgb=args.crf_bilateral_srgb, bilateral_compat=args.crf_bilateral_compat)
    config = EvalConfig(out=args.out, dataset=args.dataset, root=root, split=split,
                        checkpoint=args.checkpoint, method=args.method, method_options=options,
                        bg_threshold=args.bg_threshold, sweep=args.sweep, crf=args.crf, crf_params=crf,
                        scales=args.scales, flip=args.flip, input_size=args.input_size, labels=args.labels,
                        device=args.device, workers=args.workers, threads=args.threads, batch_size=args.batch_size,
                        precision=args.precision, limit=args.limit, oracle_block=args.oracle_block,
                        faithfulness=args.faithfulness, faithfulness_images=args.faithfulness_images,
                        refinement=args.refine, refinement_options=_refinement_options(args))
    result = evaluate(config)
    if result:
        summary = {k: result[k] for k in ("miou",) if k in result}
        if "nocrf" in result:
            summary["miou_nocrf"] = result["nocrf"]["miou"]
        if "threshold_sweep" in result:
            summary["best_bg_threshold"] = result["threshold_sweep"]["best_threshold"]
            summary["best_miou_nocrf"] = result["threshold_sweep"]["best_miou"]
        if "faithfulness" in result:
            summary["faithfulness"] = {k: v for k, v in result["faithfulness"].items()
                                       if k in ("road_combined", "deletion_auc", "insertion_auc")}
        print(json.dumps(summary))
        print(f"wrote {Path(args.out) / 'metrics.json'}")
    return 0
