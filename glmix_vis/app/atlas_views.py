"""The atlas tab's views (gradio-free): a clicked pixel's slot in every block, the concept of its
slot in a loaded atlas with that concept's typical slots, and the current image's per-block
slot numbers that need no ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..discovery.lookup import LoadedAtlas, load_atlas, slot_concepts
from ..discovery.merge import DEFAULT_MERGE
from ..discovery.quality import image_slot_quality
from .messages import AppError
from .views import Analysis, Picture

__all__ = ["atlas_or_none", "block_metrics", "concept_picture", "pixel_detail"]


def atlas_or_none(folder: str | None) -> LoadedAtlas | None:
    """The atlas in ``folder`` (None when no folder is given); an :class:`AppError` saying what is wrong."""
    if not folder or not folder.strip():
        return None
    try:
        return load_atlas(folder.strip())
    except ValueError as exc:
        raise AppError(str(exc)) from exc


def _assignment(result: Analysis, atlas: LoadedAtlas) -> dict[int, int]:
    key = ("atlas", str(atlas.folder), id(atlas.data))
    try:
        return result.cached(key, lambda: slot_concepts(result.predictor, atlas)[0])
    except (ValueError, IndexError) as exc:
        raise AppError(f"this atlas does not fit the model: {exc}") from exc


def concept_picture(result: Analysis, atlas: LoadedAtlas) -> np.ndarray:
    """The displayed image with the atlas block's slots coloured by their concept."""
    from ..figures.palette import slot_palette
    from ..figures.render import overlay_slots

    assignment = _assignment(result, atlas)
    hard = result.hard(atlas.block)
    table = np.zeros(int(hard.max()) + 1, dtype=np.int64)
    table[list(assignment)] = list(assignment.values())
    return overlay_slots(result.shown, table[hard], slot_palette(len(atlas.data["concepts"])))


def pixel_detail(result: Analysis, atlas: LoadedAtlas | None, x: int, y: int) -> tuple[str, list[Picture]]:
    """Markdown for the pixel ``(x, y)`` of the displayed image, and the crops of its concept (read
    here: the page serves pictures it saved itself, not files of any folder)."""
    shown = result.shown
    if not (0 <= y < shown.shape[0] and 0 <= x < shown.shape[1]):
        return "", []
    lines = [f"**Pixel ({x}, {y})**", "", "| block | slot | its share of the image |", "|---|---:|---:|"]
    for b, label in enumerate(result.loaded.block_labels):
        hard = result.hard(b)  # the share of the shown partition (a slot may win pixels but no grid token)
        slot = int(hard[y, x])
        lines.append(f"| {label} | {slot} | {100 * float((hard == slot).mean()):.1f}% |")
    if atlas is None:
        return "\n".join(lines + ["", "Load an atlas (`glmix-vis atlas --out DIR`) to see the slot's concept."]), []
    slot = int(result.hard(atlas.block)[y, x])
    c = _assignment(result, atlas).get(slot)
    if c is None:
        return "\n".join(lines), []
    info = atlas.concept(c)
    what = f"concept {c}" + (f", mostly {info['majority']}" if info.get("majority") else "")
    purity = f", purity {100 * info['purity']:.0f}%" if info.get("purity") is not None else ""
    top = sorted(info.get("importance", {}).items(), key=lambda kv: -kv[1])[:3]
    lines += ["", f"In the atlas of {atlas.data.get('block_name', atlas.block)}: slot {slot} is **{what}** "
              f"({info['size']} slots of {atlas.data['images']} images, {100 * info['share']:.1f}% of their "
              f"pixels{purity})."]
    if top:
        # importance is the mean drop of a class's score when the concept's slots are removed
        lines.append("Removing it changes the class scores by " + ", ".join(f"{k} {-v:+.3f}" for k, v in top)
                     + " on average.")
    return "\n".join(lines), [(_read(p), caption) for p, caption in atlas.crops(c) if Path(p).is_file()]


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def block_metrics(result: Analysis) -> str:
    """The current image's slot numbers per block that need no ground truth: slots used, and the
    consistency of each block's partition with the next one (all slots; merged to 6 groups)."""
    num = len(result.loaded.block_labels)
    merge = DEFAULT_MERGE["voc"]
    rows = result.cached(("block-metrics",), lambda: image_slot_quality(result.predictor, None, list(range(num)),
                                                                        merge=merge))
    lines = ["| block | slots used | consistency with the next block | merged to 6 |", "|---|---:|---:|---:|"]
    for b, row in enumerate(rows):
        cons = row.get("consistency")
        raw, merged = (f"{100 * cons['raw']:.1f}%", f"{100 * cons['merged']:.1f}%") if cons else ("–", "–")
        total = result.predictor.maps([b])[0].num_slots
        lines.append(f"| {result.loaded.block_labels[b]} | {row['used_slots']} / {total} | {raw} | {merged} |")
    lines += ["", "FG-ARI, mBO and CorLoc need ground truth: `glmix-vis slot-quality` scores a whole split."]
    return "\n".join(lines)
