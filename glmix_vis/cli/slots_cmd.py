"""``glmix-vis slots``: print the slot groupings of an image, block by block (no server, no figure)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ._args import add_device_argument, add_precision_argument, block_list, positive_int
from ._dispatch import UserError

if TYPE_CHECKING:
    import numpy as np


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help="print the slot maps of an image",
                              description="Run the model once and print, for every GLMix block, its grid, "
                                          "the share of the image each slot takes and a coarse map of the "
                                          "hard slot assignment. Without IMAGE, a bundled example is used.")
    p.add_argument("image", nargs="?", help="image file (default: a bundled example)")
    p.add_argument("--checkpoint", help="checkpoint file or name (default: the bundled demo model)")
    p.add_argument("--blocks", help="GLMix block indices, e.g. 0,2,-1 (default: all)")
    p.add_argument("--input-size", type=positive_int, help="short side the network sees (default: the model's)")
    add_device_argument(p)
    add_precision_argument(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def _ascii_map(hard: np.ndarray, width: int = 32) -> list[str]:
    symbols = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#@"
    h, w = hard.shape
    step = max(1, w // width)
    return ["".join(symbols[v % len(symbols)] for v in row[::step]) for row in hard[::step]]


def run(args: argparse.Namespace) -> int:
    import numpy as np  # the network's imports (torch) come once the arguments are parsed

    from ..assets import example_images
    from ..models.slots import block_label, resolve_blocks
    from ..predictor import SlotPredictor
    from ..preprocess import load_working_image

    image = args.image
    if image is None:
        examples = example_images()
        if not examples:
            raise UserError("no image given and no bundled example found")
        image = next(iter(examples.values()))
    predictor = SlotPredictor.from_checkpoint(args.checkpoint, device=args.device, precision=args.precision)
    predictor.set_image(load_working_image(image), input_size=args.input_size)
    blocks = block_list(args.blocks)
    try:
        maps = predictor.maps(blocks)
    except IndexError as exc:
        raise UserError(str(exc)) from exc
    scores = predictor.class_scores()
    names = predictor.info.foreground_names
    top = sorted(zip(names, scores.tolist()), key=lambda t: -t[1])[:5]
    head_top = predictor.top_predictions(5, min_score=0.01) if predictor.info.head_names else []
    report = dict(image=str(image), model=predictor.info.name, input=list(predictor.batch.shape[-2:]),
                  precision=predictor.info.precision_name,
                  model_note=predictor.info.knowledge_note(),
                  classes={n: round(s, 4) for n, s in top},
                  head=[dict(name=p.name, score=round(p.score, 4), feeds=p.feeds) for p in head_top], blocks=[])
    indices = resolve_blocks(predictor.num_glmix_blocks, blocks)
    for index, m in zip(indices, maps):
        share = m.share()[0].cpu().numpy()
        report["blocks"].append(dict(name=block_label(index, m), module=m.name, grid=list(m.grid), slots=m.num_slots,
                                     used_slots=int((share > 0).sum()),
                                     top_shares=[round(float(s), 3) for s in np.sort(share)[::-1][:5]],
                                     hard=m.hard[0].cpu().numpy()))
    if predictor.has_segmentation:  # a segmenter: its own prediction beside the slot maps
        mask = predictor.segmentation()
        shares = np.bincount(mask.ravel(), minlength=len(predictor.info.class_names)) / mask.size
        report["segmentation"] = dict(classes={n: round(float(s), 4) for n, s in zip(predictor.info.class_names, shares)
                                               if s > 0}, mask=mask)
    if args.json:
        if "segmentation" in report:
            report["segmentation"]["mask"] = report["segmentation"]["mask"].tolist()
        for b in report["blocks"]:
            b["hard"] = b["hard"].tolist()
        print(json.dumps(report, indent=1))
        return 0
    precision = "" if report["precision"] == "fp32" else f" in {report['precision']}"
    print(f"{report['image']}: {report['model']} at {report['input'][0]}x{report['input'][1]}{precision}")
    print(predictor.info.knowledge_note())
    if head_top:  # an ImageNet head: what it sees, and the VOC class each of those feeds
        print("the head sees: " + ", ".join(str(p) for p in head_top))
    print("classes: " + ", ".join(f"{n} {s:.2f}" for n, s in top))
    if "segmentation" in report:
        seg = report["segmentation"]
        print("\nsegmentation (argmax over every class, no image labels): "
              + ", ".join(f"{n} {v:.0%}" for n, v in seg["classes"].items()))
        print("\n".join("  " + line for line in _ascii_map(seg["mask"])))
    for b in report["blocks"]:
        print(f"\n{b['name']}  grid {b['grid'][0]}x{b['grid'][1]}  {b['used_slots']}/{b['slots']} slots used  "
              f"largest shares {b['top_shares']}")
        print("\n".join("  " + line for line in _ascii_map(b["hard"])))
    return 0
