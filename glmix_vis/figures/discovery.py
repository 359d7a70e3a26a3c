"""Figures of the object-discovery measurements: slot quality per block, the slot atlas.

:func:`slot_quality_figure` and :func:`atlas_figure` take plain data (``slot_quality.json``,
``atlas.json`` and its folder); :func:`atlas_concepts` is a layout (``LAYOUTS["atlas"]``): images
explained by the concepts of a saved atlas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .palette import OKABE_ITO
from .style import PaperFigure, column_width, figure_style

if TYPE_CHECKING:
    from .sources import Source

__all__ = ["atlas_concepts", "atlas_figure", "save_slot_quality_figure", "slot_quality_figure"]

_SERIES = (("fg_ari", "FG-ARI"), ("mbo_i", "mBO$^i$"), ("mbo_c", "mBO$^c$"), ("corloc", "CorLoc"))


def slot_quality_figure(report: dict[str, Any], width: str | float = "double", dpi: float = 300) -> PaperFigure:
    """Metrics per GLMix block: all slots (solid) and merged slots (dashed), the slot oracle
    (grey) on the left; adjacent-block consistency on the right."""
    blocks = report["blocks"]
    xs = [b["block"] for b in blocks]
    w = column_width(width)
    with figure_style():
        fig = PaperFigure(figsize=(w, w * 0.42), export_dpi=dpi, layout="constrained")
        ax, cons = fig.subplots(1, 2, width_ratios=(2.2, 1))
        for (key, title), color in zip(_SERIES, (OKABE_ITO[4], OKABE_ITO[5], OKABE_ITO[2], OKABE_ITO[6])):
            raw = [b[key] for b in blocks]
            if any(v is not None for v in raw):
                ax.plot(xs, [100 * v if v is not None else float("nan") for v in raw], "o-", color=color,
                        label=title, ms=3)
            merged = [b["merged"][key] for b in blocks] if report.get("merge") else []
            if any(v is not None for v in merged):
                ax.plot(xs, [100 * v if v is not None else float("nan") for v in merged], "s--", color=color, ms=3,
                        label=f"{title}, {report['merge']} groups")
        if any(b.get("oracle_miou") is not None for b in blocks):
            ax.plot(xs, [100 * (b.get("oracle_miou") or float("nan")) for b in blocks], "^:", color="0.45",
                    label="slot oracle mIoU", ms=3)
        ax.set(xlabel="GLMix block", ylabel="%", xticks=xs, ylim=(0, 100))
        ax.set_title(f"{report.get('model', '')} · {report.get('dataset', '')} {report.get('split', '')} "
                     f"({report['images']} images)".strip(" ·"))
        if ax.lines:  # under the axes: the lines start at the top left
            ax.legend(ncols=4, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2))
        else:  # images without ground truth: say why the panel is empty rather than leave it blank
            ax.text(0.5, 0.5, "no ground truth: FG-ARI, mBO and CorLoc need object masks\n"
                    "(these images are scored for consistency only, right)", transform=ax.transAxes,
                    ha="center", va="center", color="0.35")
        pairs = [b for b in blocks if b.get("consistency_next")]
        labels = [f"{b['block']}→{b['consistency_next']['next']}" for b in pairs]
        at = list(range(len(pairs)))
        cons.bar([x - 0.2 for x in at], [100 * (b["consistency_next"]["raw"] or 0) for b in pairs], 0.4,
                 color=OKABE_ITO[1], label="all slots")
        if report.get("merge"):
            cons.bar([x + 0.2 for x in at], [100 * (b["consistency_next"]["merged"] or 0) for b in pairs], 0.4,
                     color=OKABE_ITO[2], label=f"{report['merge']} groups")
        cons.set(xticks=at, xticklabels=labels, ylim=(0, 100), xlabel="adjacent blocks",
                 title="consistency (Hungarian IoU)")
        if pairs:
            cons.legend(frameon=False)
    return fig


def save_slot_quality_figure(report: dict[str, Any], out: str | Path) -> list[Path]:
    """``out/slot_quality.png`` and ``.pdf`` of :func:`slot_quality_figure`."""
    from .style import save_figure

    fig = slot_quality_figure(report)
    return [save_figure(fig, Path(out) / "slot_quality.png"), save_figure(fig, Path(out) / "slot_quality.pdf")]


def atlas_figure(atlas: dict[str, Any], folder: str | Path, concepts: int = 8, crops: int = 5,
                 width: str | float = "double", dpi: float = 300) -> PaperFigure:
    """The atlas's concepts, one row each (name, purity, typical crops with the slot outlined): the
    largest of each majority class first; the scores against CRAFT beside them. ``folder`` holds the ``crops/`` the atlas names."""
    from PIL import Image

    rows = _showcase(atlas["concepts"])[:concepts]
    w = column_width(width)
    cell = (w * 0.7) / (crops + 1.6)
    with figure_style():
        fig = PaperFigure(figsize=(w, cell * len(rows) + 0.35), export_dpi=dpi, layout="constrained")
        left, right = fig.subfigures(1, 2, width_ratios=(0.7, 0.3))
        axes = left.subplots(len(rows), crops, squeeze=False)
        for r, concept in enumerate(rows):
            label = f"c{concept['id']}"
            if concept.get("majority"):
                label += f" {concept['majority']}\n{100 * (concept.get('purity') or 0):.0f}% pure"
            label += f"\n{100 * concept['share']:.1f}% px"
            examples = [e for e in concept["examples"] if e.get("crop")][:crops]
            for j in range(crops):
                ax = axes[r, j]
                ax.set_axis_off()
                if j < len(examples):
                    ax.imshow(np.asarray(Image.open(Path(folder) / examples[j]["crop"]).convert("RGB")))
            axes[r, 0].text(-0.08, 0.5, label, transform=axes[r, 0].transAxes, ha="right", va="center")
        left.suptitle(f"slot atlas, {atlas.get('block_name', atlas['block'])}: {len(atlas['concepts'])} concepts "
                      f"over {atlas['images']} images")
        _atlas_scores(right, atlas)
    return fig


def _showcase(concepts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The largest concept of each majority class first (a reader sees every class the atlas
    found), then the others, each group by decreasing pixel share."""
    by_share = sorted(concepts, key=lambda c: -c["share"])
    seen: set[Any] = set()
    first = [c for c in by_share if c.get("majority") not in seen and not seen.add(c.get("majority"))]
    return first + [c for c in by_share if c not in first]


def _atlas_scores(sub: Any, atlas: dict[str, Any]) -> None:
    """Bars: purity, deletion and insertion AUC of the slot atlas against CRAFT."""
    fid = atlas.get("fidelity") or {}
    pur = atlas.get("purity") or {}
    metrics = [("purity ↑", pur.get("atlas"), (atlas.get("craft") or {}).get("purity")),
               ("deletion ↓", (fid.get("slot_atlas") or {}).get("deletion_auc"), (fid.get("craft") or {}).get("deletion_auc")),
               ("insertion ↑", (fid.get("slot_atlas") or {}).get("insertion_auc"),
                (fid.get("craft") or {}).get("insertion_auc"))]
    metrics = [m for m in metrics if m[1] is not None]
    ax = sub.subplots()
    at = list(range(len(metrics)))
    ax.bar([x - 0.2 for x in at], [m[1] for m in metrics], 0.4, color=OKABE_ITO[4], label="slot atlas")
    ax.bar([x + 0.2 for x in at], [m[2] or 0 for m in metrics], 0.4, color=OKABE_ITO[5], label="CRAFT (NMF)")
    ax.set(xticks=at, xticklabels=[m[0] for m in metrics], ylim=(0, 1))
    ax.legend(frameon=False, loc="upper center")
    if pur.get("by_index") is not None:
        ax.axhline(pur["by_index"], color="0.5", lw=0.6, ls=":")
        ax.axhline(pur["per_slot"], color="0.5", lw=0.6, ls="--")
        ax.set_title("purity lines: by slot index (dotted),\nevery slot its own concept (dashed)", fontsize=5.5)


def _tile(path: Path, side: int) -> np.ndarray:
    """A crop centred on a white square of ``side`` pixels."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    img.thumbnail((side, side))
    tile = np.full((side, side, 3), 255, np.uint8)
    h, w = img.size[1], img.size[0]
    tile[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = np.asarray(img)
    return tile


def atlas_concepts(source: Source, atlas: str | Path, *, concepts: int = 3, width: str | float = "double",
                   alpha: float = 0.45, row_labels: Sequence[str] | None = None, input_size: int | None = None,
                   dpi: float = 300) -> PaperFigure:
    """An image explained by dataset concepts: the image, its atlas block's slots coloured by the
    concept each belongs to, then the ``concepts`` concepts most particular to the image (its share
    of them against the atlas's), each shown by
    four typical slots of the atlas's images (their region outlined), titled with the concept's
    majority class and purity. One row per image."""
    from ..discovery.lookup import concept_map, load_atlas
    from .palette import slot_palette
    from .panels import Frame, Panel, Row, aspect, assemble, label_margin, pixels
    from .render import overlay_slots, resize_image, resize_labels
    from .sources import predictor_rows

    loaded = load_atlas(atlas)
    palette = slot_palette(len(loaded.data["concepts"]))
    frame = Frame(column_width(width), left=label_margin() if row_labels else 0.0)
    rows = []
    for r, predictor in enumerate(predictor_rows(source, input_size)):
        cmap = concept_map(predictor, loaded)
        image = predictor.image
        top = _telling_concepts(cmap, loaded.data["concepts"], concepts)
        widths, height = frame.panel_widths([aspect(image)] * 2 + [1.0] * len(top))
        size = pixels(widths[0], aspect(image), dpi)
        shown = resize_image(image, size)
        panels = [Panel(shown, ("input",)),
                  Panel(overlay_slots(shown, resize_labels(cmap, size), palette, alpha), ("concepts of its slots",
                                                                                          "concepts"))]
        for c, w in zip(top, widths[2:]):
            side = pixels(w, 1.0, dpi)[1]
            crops = loaded.crops(c)[:4] or []
            tiles = [_tile(p, side // 2) for p, _ in crops] + [np.full((side // 2, side // 2, 3), 255, np.uint8)] * 4
            montage = np.vstack([np.hstack(tiles[0:2]), np.hstack(tiles[2:4])])
            info = loaded.concept(c)
            name = f"c{c} {info.get('majority') or ''}".strip()
            pur = f" {100 * info['purity']:.0f}%" if info.get("purity") is not None else ""
            panels.append(Panel(montage, (f"{name}{pur}", name, f"c{c}")))
            panels[-1].draw = _swatch(palette[c])
        label = row_labels[r] if row_labels and r < len(row_labels) else None
        rows.append(Row(panels, widths, height, label))
    with figure_style():
        return assemble(rows, frame, dpi, titles="all")


def _telling_concepts(cmap: np.ndarray, concepts: list[dict[str, Any]], k: int) -> list[int]:
    """The ``k`` concepts of an image most over-represented in it against the whole atlas (its
    share here over its share there), among those covering at least 1% of the image: the
    background concepts that fill every picture come after what is particular to this one."""
    ids, counts = np.unique(cmap, return_counts=True)
    share = counts / counts.sum()
    lift = share / np.maximum([concepts[int(c)]["share"] for c in ids], 1e-9)
    order = np.lexsort((-share, -(lift * (share >= 0.01))))
    return ids[order][:k].tolist()


def _swatch(color: np.ndarray) -> Callable[[Any, float], None]:
    """A small square of the concept's overlay colour in the panel's corner."""
    from matplotlib.patches import Rectangle

    def draw(ax: Any, width_in: float) -> None:
        ax.add_patch(Rectangle((0.0, 0.0), 0.12, 0.12, transform=ax.transAxes, color=np.asarray(color) / 255,
                               ec="white", lw=0.5))
    return draw
