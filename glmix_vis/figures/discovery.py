"""Figures of the object-discovery measurements: slot quality per block.

Plain data in (the ``slot_quality.json`` dictionary), a :class:`PaperFigure` out: the figures
know nothing of how the numbers were made.
"""

from __future__ import annotations

from typing import Any

from .palette import OKABE_ITO
from .style import PaperFigure, column_width, figure_style

__all__ = ["slot_quality_figure"]

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
