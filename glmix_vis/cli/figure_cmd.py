"""``glmix-vis figure``: publication figures (PDF, SVG, PNG) of slot maps and class evidence."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ..figures.layouts import LAYOUTS, Layout, LayoutOption, layout_options
from ._args import (
    add_device_argument,
    add_precision_argument,
    expand_inputs,
    positive_int,
    print_dpi,
)
from ._dispatch import UserError

FORMATS = ("pdf", "svg", "png")


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """The ``figure`` command: its layouts, and each layout's options, come from :data:`LAYOUTS`."""
    shows = "; ".join(f"'{key}' {layout.shows}" for key, layout in LAYOUTS.items())
    p = subparsers.add_parser(
        name, help="publication figures of slot maps and class evidence (PDF, SVG, PNG)",
        description=f"Draw a figure sized for a paper column: {shows}. A folder means every image in it: "
                    "one figure per image, or one figure for all with --combine.")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and/or folders of images")
    p.add_argument("--checkpoint", metavar="CKPT", help="checkpoint file or name (default: the bundled demo model)")
    p.add_argument("--layout", choices=list(LAYOUTS), default="grid", help="what to draw (default: grid)")
    p.add_argument("-o", "--out", help="output file (.pdf, .svg, .png); with several images and no --combine, "
                                       "a folder or a pattern such as 'figs/{stem}.pdf' "
                                       "(default: <image stem>_<layout>.pdf here)")
    p.add_argument("--format", choices=FORMATS, help="format of files written into a folder (default: pdf)")
    p.add_argument("--combine", action="store_true", help="one figure with a row per image")
    p.add_argument("--width", choices=("single", "double"), default="double",
                   help="single (3.3 in) or double (6.9 in) column (default: double)")
    p.add_argument("--dpi", type=print_dpi, default=300, help="resolution of the images in the figure (default: 300)")
    p.add_argument("--input-size", type=positive_int, metavar="N", help="short side the network sees (default: the model's)")
    for option, layouts in layout_options().items():
        _add_layout_option(p, option, layouts)
    truth = [key for key, layout in LAYOUTS.items() if layout.ground_truth]
    p.add_argument("--gt", metavar="DIR", help=f"{_which(truth)}: folder of ground-truth label PNGs named like the "
                                              "images (VOC's SegmentationClass): shown, and the masks use its classes")
    p.add_argument("--labels", action=argparse.BooleanOptionalAction, default=None,
                   help="label rows with the image names (default: with --combine)")
    add_device_argument(p)
    add_precision_argument(p)
    return p


def _which(layouts: list[str]) -> str:
    return f"{', '.join(layouts)} layout{'s' * (len(layouts) > 1)}"


def _dest(option: LayoutOption) -> str:
    return f"layout_{option.keyword}"


def _add_layout_option(p: argparse.ArgumentParser, option: LayoutOption, layouts: list[str]) -> None:
    """One layout option as a flag; left out, it stays ``None`` and the layout's own default holds."""
    text = f"{_which(layouts)}: {option.help}"
    if option.switch is not None:
        p.add_argument(option.flag, dest=_dest(option), action="store_const", const=option.switch, default=None,
                       help=text)
    else:
        p.add_argument(option.flag, dest=_dest(option), metavar=option.metavar, default=None, help=text)


def layout_arguments(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The keyword arguments of layout ``name`` from the command line, parsed (before any model or
    image is loaded); an option of another layout, or a bad value, is one clear error."""
    layout, chosen = LAYOUTS[name], {}
    for option, layouts in layout_options().items():
        given = getattr(args, _dest(option))
        if given is None:
            continue
        if option not in layout.options:
            raise UserError(f"{option.flag} applies to the {_which(layouts)}, not to --layout {name}")
        try:
            chosen[option.keyword] = option.value(given)
        except ValueError as exc:
            raise UserError(f"{option.flag}: {exc}") from None
    return chosen


def check_layout_arguments(layout: Layout, chosen: dict[str, Any], predictor: Any) -> None:
    """The chosen values against the loaded model, before any image is read."""
    for option in layout.options:
        if option.check is not None and option.keyword in chosen:
            try:
                option.check(chosen[option.keyword], predictor)
            except ValueError as exc:
                raise UserError(f"{option.flag}: {exc}") from None


def _check_suffix(path: Path) -> Path:
    from ..figures.style import SAVE_FORMATS

    if path.suffix.lower() not in SAVE_FORMATS:
        raise UserError(f"{path}: unknown output extension {path.suffix or '(none)'!r}; "
                        f"use {', '.join(SAVE_FORMATS)}")
    return path


def output_paths(images: list[Path], out: str | None, fmt: str | None, layout: str, combine: bool) -> list[Path]:
    """One output path per figure: a single one when combined or for one image; checked writable
    (no file where a folder must be) before any image is processed."""
    paths = _output_paths(images, out, fmt, layout, combine)
    for path in paths:
        blocker = next((a for a in path.parents if a.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise UserError(f"cannot write {path}: {blocker} is a file, not a folder")
        if path.is_dir():
            raise UserError(f"cannot write {path}: it is a folder")
    return paths


def _output_paths(images: list[Path], out: str | None, fmt: str | None, layout: str, combine: bool) -> list[Path]:
    ext = f".{fmt or 'pdf'}"
    single = combine or len(images) == 1
    if single:
        stem = f"figure_{layout}" if len(images) > 1 else f"{images[0].stem}_{layout}"
        if out is None:
            return [Path(stem + ext)]
        target = Path(out)
        if target.is_dir() or (not target.suffix and "{" not in out):
            return [target / (stem + ext)]
        return [_check_suffix(Path(out.format(stem=images[0].stem, name=images[0].name, index=0)))]
    if out is not None and "{" in out:
        try:
            paths = [Path(out.format(stem=p.stem, name=p.name, index=i)) for i, p in enumerate(images)]
        except (KeyError, IndexError, ValueError) as exc:
            raise UserError(f"--out pattern {out!r}: use {{stem}}, {{name}} or {{index}} ({exc})") from None
        for p in paths:
            _check_suffix(p)
        if len(set(paths)) < len(paths):
            raise UserError(f"--out pattern {out!r} gives the same file for several images: add {{index}}")
        return paths
    folder = Path(out) if out is not None else Path(".")
    if out is not None and folder.suffix and not folder.is_dir():
        raise UserError(f"{len(images)} images give {len(images)} figures: --out must be a folder or a pattern "
                        f"such as 'figs/{{stem}}{folder.suffix}', or use --combine for one figure")
    paths, seen = [], set()
    for p in images:
        name = f"{p.stem}_{layout}" if out is None else p.stem
        candidate, n = name, 2
        while candidate in seen:  # the same file name in two folders
            candidate, n = f"{name}_{n}", n + 1
        seen.add(candidate)
        paths.append(folder / (candidate + ext))
    return paths


def _ground_truth_reader(folder: str | None) -> Callable[[Path], Any] | None:
    """``--gt DIR``: a reader of each image's label PNG (``DIR/<stem>.png``, palette indices as
    VOC's SegmentationClass), checked up front; ``None`` without ``--gt``."""
    if folder is None:
        return None
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"--gt {folder}: no such folder")

    def read(image: Path) -> Any:
        import numpy as np
        from PIL import Image, UnidentifiedImageError

        path = root / f"{image.stem}.png"
        if not path.is_file():
            raise UserError(f"--gt: no ground truth for {image.name} (looked for {path})")
        try:
            with Image.open(path) as im:
                if im.mode not in ("P", "L"):
                    raise UserError(f"{path}: a label PNG must hold class indices (palette or greyscale), "
                                    f"not {im.mode}")
                return np.asarray(im)
        except (OSError, UnidentifiedImageError) as exc:
            raise UserError(f"{path}: cannot read the ground truth ({exc})") from None

    return read


def _truth_for(gt: Any, image: Any) -> Any:
    """The ground truth at the size the image is worked at: a large image is read shrunk
    (:func:`~glmix_vis.preprocess.load_working_image`), and a mask of its stored size is shrunk
    with it (nearest); any other mismatch is left for the layout to refuse."""
    from ..figures.render import resize_labels
    from ..io import shrunk_size
    from ..preprocess import MAX_INPUT_PIXELS

    (gh, gw), (h, w) = gt.shape[:2], image.shape[:2]
    if (gh, gw) != (h, w) and shrunk_size(gw, gh, MAX_INPUT_PIXELS) == (w, h):
        return resize_labels(gt, (h, w))
    return gt


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..figures import save_figure
    from ..predictor import SlotPredictor
    from ..preprocess import load_working_image

    layout = LAYOUTS[args.layout]
    images = expand_inputs(args.inputs)
    paths = output_paths(images, args.out, args.format, args.layout, args.combine)
    chosen = layout_arguments(args, args.layout)  # checked before the model loads
    if args.input_size is not None and args.input_size < 32:
        raise UserError(f"--input-size must be at least 32, got {args.input_size}")
    if args.gt is not None and not layout.ground_truth:
        raise UserError(f"--gt applies to the {_which([k for k, v in LAYOUTS.items() if v.ground_truth])} only")
    from ..loading import checkpoint_line

    predictor = SlotPredictor.from_checkpoint(args.checkpoint, device=args.device, precision=args.precision)
    print(checkpoint_line(predictor.info.checkpoint, args.checkpoint), file=sys.stderr)
    if predictor.info.is_demo or layout.needs_head:
        print(predictor.info.knowledge_note(), file=sys.stderr)
    if int(getattr(predictor.model, "num_glmix_blocks", 0)) == 0:
        raise UserError(f"{predictor.info.name} has no GLMix blocks: there are no slot maps to draw")
    if layout.needs_head and not predictor.info.foreground_names:
        raise UserError(f"{predictor.info.name} has no classification head: the {args.layout} layout needs one")
    if layout.needs_segmenter and not predictor.has_segmentation:
        raise UserError(f"{predictor.info.name} has no segmentation head: the {args.layout} layout needs a "
                        "checkpoint written by glmix-wsss train-seg")
    check_layout_arguments(layout, chosen, predictor)  # a clear error now, before any image is processed
    truth = _ground_truth_reader(args.gt)
    gts = {} if truth is None else {p: truth(p) for p in images}  # every one checked before any work
    draw = partial(layout.function, width=args.width, dpi=args.dpi, **chosen)
    labels = args.labels if args.labels is not None else (args.combine and len(images) > 1)

    if args.combine or len(images) == 1:
        loaded, names, kept = [], [], []
        for path in images:
            try:
                loaded.append(load_working_image(path))
                names.append(path.stem)
                kept.append(path)
            except ValueError as exc:
                if len(images) == 1:
                    raise UserError(str(exc)) from None
                print(f"skipping {exc}", file=sys.stderr)
        if not loaded:
            raise UserError("none of the images could be read")
        rows = tqdm(loaded, desc="figure", unit="image", disable=None) if len(loaded) > 1 else loaded
        extra = {} if truth is None else {"ground_truth": [_truth_for(gts[p], im) for p, im in zip(kept, loaded)]}
        fig = draw((predictor, rows), row_labels=names if labels else None, input_size=args.input_size, **extra)
        print(f"wrote {save_figure(fig, paths[0])}")
        return 0 if len(loaded) == len(images) else 1

    failed = 0
    for path, out in tqdm(list(zip(images, paths)), desc="figures", unit="image", disable=None):
        try:
            image = load_working_image(path)
        except ValueError as exc:
            tqdm.write(f"skipping {exc}", file=sys.stderr)
            failed += 1
            continue
        extra = {} if truth is None else {"ground_truth": [_truth_for(gts[path], image)]}
        fig = draw((predictor, [image]), row_labels=[path.stem] if labels else None, input_size=args.input_size,
                   **extra)
        save_figure(fig, out)
    written = len(images) - failed
    where = sorted({str(p.parent) for p in paths})
    print(f"wrote {written} figure{'s' * (written != 1)} to {', '.join(where)}")
    return 0 if failed == 0 else 1
