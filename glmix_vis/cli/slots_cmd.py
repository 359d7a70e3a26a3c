"""``glmix-vis slots``: print the slot groupings of an image, block by block (no server, no figure)."""

from __future__ import annotations

import argparse
import json
import re
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


#: One character per slot index in the text maps (repeating after 64 slots).
SYMBOLS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#@"
#: The widest text map, in characters.
MAP_WIDTH = 32


def _map_step(width: int) -> int:
    return max(1, width // MAP_WIDTH)


def _ascii_map(hard: np.ndarray) -> list[str]:
    step = _map_step(hard.shape[1])
    return ["".join(SYMBOLS[v % len(SYMBOLS)] for v in row[::step]) for row in hard[::step]]


def legend(grid_widths: list[int]) -> str:
    """How to read the text maps, said once before them."""
    step = max((_map_step(w) for w in grid_widths), default=1)
    sampled = f" (the widest grids: every {step}th cell of every {step}th row)" if step > 1 else ""
    return ("How to read the maps: one character per cell of the block's grid" + sampled + ", naming the slot that "
            "wins the cell (its hard group): 0-9 are slots 0-9, A-Z slots 10-35, a-z slots 36-61, # 62, @ 63. "
            "'largest shares': the fraction of the grid each of the 5 largest slots wins. A block is named by "
            "its GLMix block index (what --blocks takes) and its stage, then by its module in Python "
            "(model.get_submodule(...)).")


def _json_text(report: dict) -> str:
    """JSON with every list of numbers on one line: a map is one line per row, not one per cell."""
    rows: list[str] = []

    def mark(value: object) -> object:
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            if value and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
                rows.append(json.dumps(value, separators=(",", ":")))
                return f"\0{len(rows) - 1}\0"
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(report), indent=1)
    return re.sub(r'"\\u0000(\d+)\\u0000"', lambda m: rows[int(m.group(1))], text)


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
    from ..loading import checkpoint_line

    blocks = block_list(args.blocks)  # a bad --blocks is said before the model loads
    predictor = SlotPredictor.from_checkpoint(args.checkpoint, device=args.device, precision=args.precision)
    predictor.set_image(load_working_image(image), input_size=args.input_size)
    try:
        maps = predictor.maps(blocks)
    except IndexError as exc:
        raise UserError(str(exc)) from exc
    top = sorted(predictor.scores_by_class().items(), key=lambda t: -t[1])[:5]
    head_top = predictor.top_predictions(5, min_score=0.01) if predictor.info.head_names else []
    report = dict(image=str(image), model=predictor.info.name, checkpoint=predictor.info.checkpoint,
                  input=list(predictor.batch.shape[-2:]), precision=predictor.info.precision_name,
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
        print(_json_text(report))
        return 0
    _print_text(report, checkpoint_line(predictor.info.checkpoint, args.checkpoint), head_top)
    return 0


def _print_text(report: dict, loaded: str, head_top: list) -> None:
    precision = "" if report["precision"] == "fp32" else f" in {report['precision']}"
    print(f"{report['image']}: {report['model']} at {report['input'][0]}x{report['input'][1]}{precision}")
    print(loaded)
    print(report["model_note"])
    if head_top:  # an ImageNet head: what it sees, and the VOC class each of those feeds
        print("the head sees: " + ", ".join(str(p) for p in head_top))
    print("classes: " + ", ".join(f"{n} {s:.2f}" for n, s in report["classes"].items()))
    if "segmentation" in report:
        seg = report["segmentation"]
        print("\nsegmentation (argmax over every class, no image labels): "
              + ", ".join(f"{n} {v:.0%}" for n, v in seg["classes"].items()))
        print("\n".join("  " + line for line in _ascii_map(seg["mask"])))
    print("\n" + legend([b["grid"][1] for b in report["blocks"]]))
    for b in report["blocks"]:
        print(f"\n{b['name']} = {b['module']}  grid {b['grid'][0]}x{b['grid'][1]}  {b['used_slots']}/{b['slots']} "
              f"slots used  largest shares {b['top_shares']}")
        print("\n".join("  " + line for line in _ascii_map(b["hard"])))
