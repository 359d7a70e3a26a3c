"""The atlas as a self-contained web page: ``index.html`` beside its ``crops/``, relative paths only.

No script, no web font, no remote file: the folder can be zipped, mailed or served as it is.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ..io import atomic_write_bytes

__all__ = ["GALLERY_FILE", "gallery_html", "write_gallery"]

GALLERY_FILE = "index.html"

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px}
.sub{color:#666;margin-bottom:16px}
table.sum{border-collapse:collapse;margin:8px 0 20px}
table.sum td,table.sum th{border:1px solid #ddd;padding:4px 10px;text-align:right}
table.sum th:first-child,table.sum td:first-child{text-align:left}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:14px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px}
.card h2{font-size:15px;margin:0 0 4px}
.meta{color:#555;font-size:12px;margin-bottom:6px}
.crops{display:flex;flex-wrap:wrap;gap:4px}
.crops img{height:96px;border-radius:3px;border:1px solid #ccc}
.bar{display:flex;align-items:center;font-size:11px;gap:6px;margin:1px 0}
.bar span.name{width:80px;text-align:right;color:#444}
.bar span.fill{height:8px;background:#0072B2;border-radius:2px}
.bar span.neg{background:#D55E00}
"""


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _num(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _summary(atlas: dict[str, Any]) -> str:
    rows = []
    pur, craft, fid = atlas.get("purity") or {}, atlas.get("craft") or {}, atlas.get("fidelity") or {}
    rows.append(("class purity (pixel-weighted)", _pct(pur.get("atlas")), _pct(craft.get("purity"))))
    for key, what in (("deletion_auc", "concept deletion AUC (lower is better)"),
                      ("insertion_auc", "concept insertion AUC (higher is better)")):
        rows.append((what, _num((fid.get("slot_atlas") or {}).get(key)), _num((fid.get("craft") or {}).get(key))))
    body = "".join(f"<tr><td>{html.escape(a)}</td><td>{b}</td><td>{c}</td></tr>" for a, b, c in rows)
    refs = ""
    if pur:
        refs = (f"<p>Purity references: slots grouped by index {_pct(pur.get('by_index'))}, every slot its own "
                f"concept {_pct(pur.get('per_slot'))}; the atlas closes {_pct(pur.get('gap_closed'))} of that gap.</p>")
    return (f"<table class='sum'><tr><th></th><th>slot atlas</th><th>CRAFT (NMF, same K)</th></tr>{body}</table>"
            + refs)


def _card(concept: dict[str, Any]) -> str:
    title = f"concept {concept['id']}"
    if concept.get("majority"):
        title += f": {html.escape(concept['majority'])}"
    meta = (f"{concept['size']} slots · {_pct(concept['share'])} of the pixels · purity {_pct(concept.get('purity'))}")
    shares = ", ".join(f"{html.escape(k)} {_pct(v)}" for k, v in concept.get("class_shares", {}).items())
    crops = "".join(
        f"<img src='{html.escape(e['crop'])}' alt='{html.escape(e['image_id'])} slot {e['slot']}' "
        f"title='{html.escape(e['image_id'])}, slot {e['slot']}'>" for e in concept["examples"] if e.get("crop"))
    imp = concept.get("importance", {})
    peak = max((abs(v) for v in imp.values()), default=0.0) or 1.0
    bars = "".join(
        f"<div class='bar'><span class='name'>{html.escape(k)}</span><span class='fill{' neg' if v < 0 else ''}' "
        f"style='width:{120 * abs(v) / peak:.0f}px'></span>{v:+.3f}</div>"
        for k, v in sorted(imp.items(), key=lambda kv: -kv[1])[:4])
    return (f"<div class='card'><h2>{title}</h2><div class='meta'>{meta}<br>{shares}</div>"
            f"<div class='crops'>{crops}</div><div class='meta' style='margin-top:6px'>importance (score drop when "
            f"removed)</div>{bars}</div>")


def gallery_html(atlas: dict[str, Any]) -> str:
    """The page: a summary against CRAFT, then one card per concept, largest first."""
    concepts = sorted(atlas["concepts"], key=lambda c: -c["share"])
    head = (f"Slot atlas: {html.escape(str(atlas.get('block_name', atlas['block'])))}, "
            f"{len(atlas['concepts'])} concepts")
    sub = (f"{html.escape(str(atlas.get('model', '')))} · {html.escape(str(atlas.get('dataset', '')))} "
           f"{html.escape(str(atlas.get('split', '')))} · {atlas['images']} images, {atlas['slots']} slots · "
           f"features: {html.escape(atlas['config']['features'])}")
    cards = "".join(_card(c) for c in concepts)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{head}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{head}</h1><div class='sub'>{sub}</div>{_summary(atlas)}"
            f"<div class='grid'>{cards}</div></body></html>\n")


def write_gallery(atlas: dict[str, Any], out: str | Path) -> Path:
    """``out/index.html``; the crops it shows are expected in ``out/crops/`` (relative links)."""
    path = Path(out) / GALLERY_FILE
    atomic_write_bytes(path, gallery_html(atlas).encode())
    return path
