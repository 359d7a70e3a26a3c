"""``glmix-wsss eval``: pseudo-masks from class evidence, refined and scored."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import _source
from ._args import (
    add_dataset_arguments,
    add_device_argument,
    add_precision_argument,
    auto_or_count,
    auto_or_positive_int,
    dataset_root,
    non_negative_float,
    non_negative_int,
    number_list,
    positive_float,
    positive_int,
    positive_number_list,
    probability,
)
from ._dispatch import UserError

if TYPE_CHECKING:
    from ..wsss.recipe import MaskRecipe

# The parser's names and defaults, read from their owners' source (importing those is importing torch).
_DEFAULT_CRF = _source.dataclass_defaults("glmix_vis.wsss.crf", "CRFParams")
_DEFAULT_PAR = _source.dataclass_defaults("glmix_vis.wsss.par", "PARParams")
_DEFAULT_SLOT_WALK = _source.dataclass_defaults("glmix_vis.wsss.slot_walk", "SlotWalkConfig")
_ORACLE_METHOD = _source.constant("glmix_vis.wsss.recipe", "ORACLE_METHOD")
_GRAD_CAM_METHODS = _source.dict_keys("glmix_vis.wsss.evidence.grad_cam", "GRAD_CAM_METHODS")
_REFINEMENTS = _source.constant("glmix_vis.wsss.refinement", "REFINEMENTS")
_DEFAULT_BG_THRESHOLD = _source.constant("glmix_vis.wsss.masks", "DEFAULT_BG_THRESHOLD")
_DEFAULT_BATCH_SIZE = _source.constant("glmix_vis.wsss.scheduling", "DEFAULT_BATCH_SIZE")

#: Named flags kept as aliases of ``--method-option NAME=VALUE``: argument dest -> option name.
_METHOD_ALIASES = {"slot_blocks": "blocks", "slot_combine": "combine", "target_layers": "target_layers",
                   "oracle_block": "block"}
#: Named flags kept as aliases of ``--refine-option NAME=VALUE``: argument dest -> (refinement, option name).
_REFINE_ALIASES = {"walk_blocks": ("slot-walk", "blocks"), "walk_steps": ("slot-walk", "steps"),
                   "walk_power": ("slot-walk", "power"), "walk_radius": ("slot-walk", "radius"),
                   "walk_top_k": ("slot-walk", "top_k"),
                   "par_iterations": ("par", "iterations"), "par_downscale": ("par", "downscale")}
#: CRFParams field -> its flag's dest.
_CRF_FLAGS = ("iterations", "gaussian_sxy", "gaussian_compat", "bilateral_sxy", "bilateral_srgb", "bilateral_compat")


def _blocks_text(blocks: str | tuple[int, ...]) -> str:
    return blocks if isinstance(blocks, str) else ",".join(str(b) for b in blocks)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _method_options(args: argparse.Namespace) -> dict[str, object]:
    """``--method-option NAME=VALUE`` and the named aliases (``--slot-blocks`` ...), checked against
    the options of ``--method``."""
    from ..wsss.recipe import mask_methods, method_option_defaults, parse_assignments

    defaults = method_option_defaults(args.method)
    options = parse_assignments(args.method_option or [], defaults, args.method)
    for dest, name in _METHOD_ALIASES.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if name not in defaults:
            takers = [m for m in mask_methods() if name in method_option_defaults(m)]
            raise UserError(f"{_flag(dest)} applies to --method {'/'.join(takers)} only")
        options[name] = value
    return options


def _refinement_options(args: argparse.Namespace) -> dict[str, object]:
    """``--refine-option NAME=VALUE`` and the named ``--walk-*``/``--par-*`` aliases of ``--refine``."""
    from ..wsss.recipe import parse_assignments
    from ..wsss.refinement import refinement_option_defaults

    options = parse_assignments(args.refine_option or [], refinement_option_defaults(args.refine),
                                f"--refine {args.refine}")
    for dest, (refinement, name) in _REFINE_ALIASES.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if args.refine != refinement:
            raise UserError(f"{_flag(dest)} applies to --refine {refinement} only")
        options[name] = value
    return options


def recipe_from_args(args: argparse.Namespace) -> MaskRecipe:
    """The :class:`MaskRecipe` the flags describe, validated (a ``ValueError`` names the problem);
    built before any data or model is touched."""
    from ..wsss.crf import CRFParams
    from ..wsss.recipe import MaskRecipe

    crf = CRFParams(**{name: getattr(args, f"crf_{name}") for name in _CRF_FLAGS})
    return MaskRecipe(args.method, args.refine, args.crf, method_options=_method_options(args),
                      refinement_options=_refinement_options(args), crf_params=crf, scales=tuple(args.scales),
                      flip=args.flip, bg_threshold=args.bg_threshold, ignore_band=_band(args.ignore_band))


def _band(values: list[float] | None) -> tuple[float, float] | None:
    if values is None:
        return None
    if len(values) != 2:
        raise UserError(f"--ignore-band takes two numbers LOW,HIGH (e.g. 0.25,0.7), got {values}")
    return (values[0], values[1])


def _add_crf_and_refinement_arguments(p: argparse.ArgumentParser) -> None:
    """The recipe's CRF and refinement flags (each a field of :class:`CRFParams` or a refinement option)."""
    p.add_argument("--crf", dest="crf", action="store_true", default=True, help="dense CRF refinement (default)")
    p.add_argument("--no-crf", dest="crf", action="store_false", help="no dense CRF: masks/ holds the unrefined masks")
    p.add_argument("--crf-iterations", type=positive_int, default=_DEFAULT_CRF.iterations,
                   help=f"CRF: mean-field iterations (default {_DEFAULT_CRF.iterations})")
    p.add_argument("--crf-bilateral-sxy", type=positive_float, default=_DEFAULT_CRF.bilateral_sxy,
                   help=f"CRF: position width of the colour kernel, pixels (default {_DEFAULT_CRF.bilateral_sxy:g})")
    p.add_argument("--crf-bilateral-srgb", type=positive_float, default=_DEFAULT_CRF.bilateral_srgb,
                   help=f"CRF: colour width of the colour kernel, levels (default {_DEFAULT_CRF.bilateral_srgb:g})")
    p.add_argument("--crf-bilateral-compat", type=non_negative_float, default=_DEFAULT_CRF.bilateral_compat,
                   help=f"CRF: weight of the colour kernel (default {_DEFAULT_CRF.bilateral_compat:g})")
    p.add_argument("--crf-gaussian-sxy", type=positive_float, default=_DEFAULT_CRF.gaussian_sxy,
                   help=f"CRF: width of the smoothness kernel, pixels (default {_DEFAULT_CRF.gaussian_sxy:g})")
    p.add_argument("--crf-gaussian-compat", type=non_negative_float, default=_DEFAULT_CRF.gaussian_compat,
                   help=f"CRF: weight of the smoothness kernel (default {_DEFAULT_CRF.gaussian_compat:g})")
    p.add_argument("--refine", choices=list(_REFINEMENTS), default="none",
                   help="refine the class evidence before the threshold (and the CRF): par (AFA's pixel-adaptive "
                        "refinement along colours) or slot-walk (a random walk along the GLMix slot maps; default none)")
    p.add_argument("--refine-option", action="append", metavar="NAME=VALUE",
                   help="an option of --refine, repeatable (the fields of SlotWalkConfig or PARParams, e.g. "
                        "steps=8); the --walk-* and --par-* options are short forms")
    p.add_argument("--walk-blocks", help="slot-walk: GLMix blocks whose slot affinities it walks, e.g. '0' or '0,1' "
                                         f"(default {_blocks_text(_DEFAULT_SLOT_WALK.blocks)})")
    p.add_argument("--walk-steps", type=non_negative_int,
                   help=f"slot-walk: random-walk steps (default {_DEFAULT_SLOT_WALK.steps})")
    p.add_argument("--walk-power", type=positive_float,
                   help=f"slot-walk: power of the slot affinity, higher is sharper (default {_DEFAULT_SLOT_WALK.power:g})")
    p.add_argument("--walk-radius", type=positive_float,
                   help=f"slot-walk: link cells at most this many grid cells apart (default {_DEFAULT_SLOT_WALK.radius:g})")
    p.add_argument("--walk-top-k", type=non_negative_int,
                   help=f"slot-walk: keep each pixel's K strongest affinities, 0 all (default {_DEFAULT_SLOT_WALK.top_k})")
    p.add_argument("--par-iterations", type=non_negative_int, help=f"par: iterations (default {_DEFAULT_PAR.iterations})")
    p.add_argument("--par-downscale", type=positive_int,
                   help=f"par: run at 1/N of the image size (default {_DEFAULT_PAR.downscale}, as AFA)")


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    methods = [*_source.evidence_methods(), _ORACLE_METHOD]
    p = subparsers.add_parser(
        name, help="score WSSS pseudo-masks (mIoU)",
        description="Class evidence -> pseudo-masks restricted to the image's ground-truth classes -> dense "
                    "CRF -> palette PNGs in OUT/masks and OUT/metrics.json (+ metrics.md). The split's ground "
                    "truth is checked first; every problem is listed and nothing is computed. Re-running with "
                    "the same OUT resumes. With no --root: the generated scenes' val split with the bundled "
                    "checkpoint. Sharded: torchrun --nproc_per_node N -m glmix_vis.cli.wsss eval ...")
    add_dataset_arguments(p, split_help="split (default: train with --root, val for the generated scenes); "
                                        "mmseg's 'aug' is train_aug")
    p.add_argument("--checkpoint", help="checkpoint file or name (default: the bundled demo model)")
    p.add_argument("--method", default="slot-cam", choices=methods,
                   help=f"class evidence; {_ORACLE_METHOD} labels each slot with its majority ground-truth class; "
                        "seg: a train-seg checkpoint's own argmax over every class (image labels not used; default slot-cam)")
    p.add_argument("--slot-blocks", help="slot-cam: GLMix blocks to use, e.g. '-1' or '0,1,2' or 'all'")
    p.add_argument("--slot-combine", choices=["mean", "product", "max"], help="slot-cam: how blocks combine")
    p.add_argument("--target-layers", metavar="NAMES",
                   help=f"{'/'.join(_GRAD_CAM_METHODS)}: comma-separated target modules as in "
                        "model.named_modules(), e.g. 'norm' or 'stages.2,stages.3' (default: the measured one)")
    p.add_argument("--oracle-block", type=int, help=f"{_ORACLE_METHOD}: which GLMix block (default -1, the last)")
    p.add_argument("--method-option", action="append", metavar="NAME=VALUE",
                   help="an option of --method, repeatable, e.g. combine=product or cam_weight=0.3 for slot-cam "
                        "(the fields of SlotCAMConfig; target_layers=... for the grad-cam family); "
                        "--slot-blocks, --slot-combine, --target-layers and --oracle-block are short forms")
    p.add_argument("--out", default="runs/eval", help="output folder (default runs/eval)")
    p.add_argument("--bg-threshold", type=probability, default=None,
                   help="background when no allowed class scores above this (default: the value the "
                        f"checkpoint records for the method, tuned on its training split; else {_DEFAULT_BG_THRESHOLD})")
    p.add_argument("--ignore-band", type=number_list, metavar="LOW,HIGH",
                   help="write 255 (not learnt by train-seg) where the best allowed class's evidence lies in "
                        "(LOW, HIGH], before and after the CRF: ToCo's low/high thresholds, e.g. 0.25,0.7")
    p.add_argument("--sweep", action="store_true", help="also sweep the background threshold (reports the best)")
    _add_crf_and_refinement_arguments(p)
    p.add_argument("--scales", type=positive_number_list, default=[1.0], help="test-time scales, e.g. 1.0,0.5,1.5 (default 1.0)")
    p.add_argument("--flip", action="store_true", help="add horizontally flipped inputs")
    p.add_argument("--input-size", type=positive_int, help="short side the network sees (default: the image's own size)")
    p.add_argument("--labels", choices=["gt", "pred"], default="gt",
                   help="restrict masks to ground-truth image labels (the WSSS protocol) or predicted ones (default gt)")
    p.add_argument("--workers", type=auto_or_count, default=None, metavar="N|auto",
                   help="CRF worker processes, 0: in this process (default auto: every core but one beside a GPU, "
                        "half of them beside a CPU network)")
    p.add_argument("--threads", type=auto_or_positive_int, default=None, metavar="N|auto",
                   help="torch threads of the network (default auto: the cores the CRF workers leave)")
    p.add_argument("--batch-size", type=positive_int, default=_DEFAULT_BATCH_SIZE,
                   help="consecutive images of one size per forward pass; above 1 float rounding may flip a rare "
                        f"boundary pixel (default {_DEFAULT_BATCH_SIZE}: one image at a time)")
    p.add_argument("--limit", type=positive_int, help="only the first N images")
    p.add_argument("--faithfulness", action="store_true",
                   help="also score the evidence's faithfulness (ROAD, deletion/insertion AUC) on the images' "
                        "ground-truth classes; costly, see --faithfulness-images")
    p.add_argument("--save-evidence", action="store_true",
                   help="also write OUT/evidence/<id>.npy: the evidence each mask thresholds, of the image's allowed "
                        "classes, as IRN saves its CAMs for its later steps (a dict: 'keys', the 0-based foreground "
                        "class indices, 'high_res', their (k, H, W) float32 maps; np.load(..., allow_pickle=True)"
                        ".item()); about 1 MB per class of a VOC-size image")
    p.add_argument("--faithfulness-images", type=positive_int, default=100,
                   help="faithfulness: the first N images of the run (default 100)")
    add_device_argument(p)
    add_precision_argument(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..data.scenes import DEFAULT_SCENES_DIR
    from ..wsss.evaluate import EvalConfig, check_output_folder, evaluate

    # Every setting is checked here, before the dataset is looked at (or generated) and the model loaded.
    split = args.split or ("train" if args.root else "val")
    config = EvalConfig(out=args.out, dataset=args.dataset, root=args.root, split=split, checkpoint=args.checkpoint,
                        labels=args.labels, sweep=args.sweep, input_size=args.input_size,
                        device=args.device, workers=args.workers, threads=args.threads, batch_size=args.batch_size,
                        precision=args.precision, limit=args.limit, faithfulness=args.faithfulness,
                        faithfulness_images=args.faithfulness_images, save_evidence=args.save_evidence,
                        recipe=recipe_from_args(args))
    # A folder of masks made otherwise is refused before the default dataset is generated (minutes).
    check_output_folder(replace(config, root=args.root or str(DEFAULT_SCENES_DIR)))
    config = replace(config, root=dataset_root(args.root, args.dataset))
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
