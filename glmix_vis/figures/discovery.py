"""Figures of the object-discovery measurements: slot quality per block.

Plain data in (the ``slot_quality.json`` dictionary), a :class:`PaperFigure` out: the figures
know nothing of how the numbers were made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .palette import OKABE_ITO
from .style import PaperFigure, column_width, figure_style

__all__ = ["atlas_figure", "slot_quality_figure"]

_SERIES = (("fg_ari", "FG-ARI"), ("mbo_i", "mBO$^i$"), ("mbo_c", "mBO$^c$"), ("corloc", "CorLoc"))


def slot_quality_figure(report: dict[str, Any], width: str | float = "double", dpi: float = 300) -> PaperFigure:
    """Metrics per GLMix block: all slots (solid) and merged slots (dashed), the slot oracle
    (grey) on the left; adjacent-block consistency on the right."""
    blocks = report["blocks"]
    xs = [b["block"] for b in blocks]
    w = column_width(width)
    with figure_style():
        fig = PaperFigure(figsize=(w, w * 0.36), export_dpi=dpi, layout="constrained")
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
        if ax.lines:
            ax.legend(ncols=2, frameon=False, loc="upper right")
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


def atlas_figure(atlas: dict[str, Any], folder: str | Path, concepts: int = 8, crops: int = 5,
                 width: str | float = "double", dpi: float = 300) -> PaperFigure:
    """The atlas's largest concepts, one row each (name, purity, typical crops with the slot outlined),
    and the scores against CRAFT beside them. ``folder`` holds the ``crops/`` the atlas names."""
    import numpy as np
    from PIL import Image

    rows = sorted(atlas["concepts"], key=lambda c: -c["share"])[:concepts]
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
        ax.set_title("dotted / dashed: purity by slot index / per slot", fontsize=6)
