"""Every sentence the web app shows a visitor: status lines, captions, what a model knows, and
errors as one line (the server's folders never appear in them).

Pure string building on plain values: the views compute the numbers, this module words them,
so a change of wording is a change to this file only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..figures.render import SOFT_MIN_CONTRAST
from ..figures.style import share_percent
from ..loading import ModelInfo

__all__ = [
    "AppError", "KEPT_PREVIOUS", "NO_BLOCK", "NO_HEAD", "NO_IMAGE", "NO_IMAGE_YET", "UPLOAD_GONE", "block_choice", "blocks_info",
    "class_status", "method_choice", "out_of_time", "error_markdown",
    "figure_ready", "load_error", "method_refused", "model_notice", "no_slot", "overlay_caption", "overlay_status",
    "slot_detail", "soft_caption", "soft_status", "strip_dirs", "unexpected_error", "uniform_multiple",
    "unknown_figure_format", "unknown_model", "unknown_soft_choice",
]


class AppError(Exception):
    """A problem to show the visitor as a message (bad upload, unusable checkpoint, ...)."""


NO_IMAGE = "upload an image or pick an example"
NO_BLOCK = "choose at least one GLMix block"
NO_IMAGE_YET = "upload an image or pick an example first"
#: An upload the server has deleted since (glmix_vis.app.file_cache), asked for again by an open page.
UPLOAD_GONE = "this image is no longer kept on the server (a busy server keeps only the newest uploads); upload it again"
NO_HEAD = "this model has no classifier head: no class evidence"
#: After an upload that could not be read: nothing shown was replaced.
KEPT_PREVIOUS = "The pictures still show the last image that could be read."


def unknown_model(label: object) -> str:
    return f"unknown model {label!r}: choose one from the list"


def method_refused(method: str, usable: Sequence[str]) -> str:
    return f"evidence method {method!r} does not apply to this model; choose one of {', '.join(usable)}"


def no_slot(index: object) -> str:
    return f"no slot at position {index}"


def unknown_figure_format(fmt: str) -> str:
    return f"unknown figure format {fmt!r}"


def figure_ready(name: str) -> str:
    return f"Figure ready: {name}"


def error_markdown(message: str) -> str:
    """How an error appears in a status line."""
    return f"**Error:** {message}"


def unexpected_error(exc: Exception) -> str:
    """The page's word on an error nobody foresaw (its traceback goes to the server log)."""
    return f"internal error ({type(exc).__name__}); the details are in the server log"


# ------------------------------------------------------------------------------ the model
def method_choice(method: str, cost_note: str | None) -> str:
    """A method in the method list: its name and, for a costly one, what it costs."""
    return method if cost_note is None else f"{method} ({cost_note})"


def out_of_time(seconds: float | None) -> str:
    """A request that passed the server's time budget."""
    return (f"stopped after {seconds:g} s, this server's time budget per request: choose a faster evidence "
            "method (slot-cam, cam, gradcam), a smaller input resolution, or run `glmix-wsss eval` offline")


def blocks_info(labels_with_path: Sequence[str]) -> str:
    """The block picker's info: each block's name beside its module path in Python, once."""
    return "In Python each block is a module of the model: " + "; ".join(labels_with_path) + "."


def block_choice(block_label: str, num_slots: int) -> str:
    """A block in the block lists: its name and slot count."""
    return f"{block_label} · {num_slots} slots"


def model_notice(label: str, info: ModelInfo, has_classifier: bool, path: str | os.PathLike[str] | None = None) -> str:
    """What the model behind ``label`` knows, in plain words (Markdown): its classes, for the
    bundled demo model that it was trained on generated scenes, not photos, and the file it was
    loaded from (``path``, absolute: which of two files of one name is served)."""
    from ..loading import checkpoint_line

    loaded = checkpoint_line(info.checkpoint, path, markdown=True) if info.checkpoint else None
    return _what_it_knows(label, info, has_classifier) + (f"\n\n{loaded[:1].upper()}{loaded[1:]}" if loaded else "")


def _what_it_knows(label: str, info: ModelInfo, has_classifier: bool) -> str:
    if not has_classifier:
        return (f"**{label}** ({info.name}) has no classifier head: it shows slot maps only "
                "(no class scores, no pseudo-masks).")
    names = ", ".join(info.foreground_names)
    count = len(info.foreground_names)
    if info.head_names:
        return (f"**{label}** ({info.name}): an ImageNet classifier ({len(info.head_names)} classes), read as "
                f"the {count} PASCAL VOC classes ({names}); the classes tab also lists the ImageNet "
                "classes it sees.")
    if info.is_demo:
        return (f"**Demo model** ({info.name}): trained on generated scenes only, it knows just these "
                f"{count} shapes: {names}. On a photo its class scores and masks mean nothing: it still "
                "names one of these shapes. For photos, load an official ImageNet checkpoint: put e.g. "
                "`glnet_4g.pth` in the checkpoint folder (`$GLMIX_CHECKPOINT_DIR`) and choose it here, "
                "or start `glmix-vis app --checkpoint glnet_4g`.")
    unnamed = "" if info.named else " (its checkpoint does not name them)"
    return f"**{label}** ({info.name}) knows {count} classes{unnamed}: {names}."


# ------------------------------------------------------------------------------ slot groups
def overlay_status(image_size: tuple[int, int], network_size: tuple[int, int], num_blocks: int,
                   seconds: float, uploaded: tuple[int, int] | None = None) -> str:
    """The analysis' status line. Every size is width×height, as image viewers write it
    (``image_size``, ``network_size``, ``uploaded``); an upload the app shrank says from what."""
    (w, h), (net_w, net_h) = image_size, network_size
    shrunk = f", downscaled from {uploaded[0]}×{uploaded[1]}" if uploaded and tuple(uploaded) != (w, h) else ""
    return (f"{w}×{h} px image (width×height{shrunk}), network input {net_w}×{net_h}, "
            f"{num_blocks} block(s) in {seconds:.2f} s")


def overlay_caption(block_label: str, used: int, num_slots: int) -> str:
    """A hard-slot overlay's caption: the block and how many of its slots win pixels."""
    return f"{block_label} · {used}/{num_slots} slots"


# ------------------------------------------------------------------------------ soft maps
def uniform_multiple(peak: float, num_slots: int) -> str:
    """A weight as a multiple of the uniform weight 1/S of a slot that prefers no pixel: ``"35×"``."""
    times = float(peak) * num_slots
    return f"{times:.0f}×" if times >= 10 else f"{times:.1f}×"


def soft_status(block_label: str, num_slots: int, shown: int, owning: int) -> str:
    """The soft-map tab's status: which slots are shown, and what the colours and captions mean."""
    which = "all its slots" if shown == num_slots else f"{shown} of its {num_slots} slots"
    none = num_slots - owning
    owners = (f"{owning} own pixels in the hard map" + (f", {none} own none (captioned *owns no pixel*, shown "
                                                         "last)" if none else ""))
    return (f"{block_label.capitalize()}: {which}, the largest area first; {owners}. Colour: each pixel's "
            f"dispatch weight to the slot, **from the uniform weight 1/{num_slots} = {1 / num_slots:.3f} (dark) "
            f"to the slot's peak in its caption (yellow)**, the peak never counted below "
            f"{SOFT_MIN_CONTRAST:g}× uniform, so a slot that prefers no pixel stays dark; the exported figure "
            f"uses the same scale. Click a slot to enlarge it.")


def soft_caption(slot: int, area: float, peak: float, num_slots: int) -> str:
    """A soft map's caption: the slot, its area in the hard map, its peak against the uniform weight."""
    owns = share_percent(area) if area > 0 else "owns no pixel"
    return f"slot {slot} · {owns} · peak {peak:.2f} = {uniform_multiple(peak, num_slots)} uniform"


def slot_detail(block_label: str, slot: int, area: float, weight: float, peak: float, num_slots: int) -> str:
    owns = (f"owns **{area:.1%}** of the image (hard assignment)" if area > 0
            else "owns **no pixel** of the image (another slot wins each one)")
    return (f"**{block_label.capitalize()}, slot {slot}**: {owns}; dispatch weight {weight:.1%} on average, "
            f"{peak:.1%} at its peak (the yellow end of its map), {uniform_multiple(peak, num_slots)} the "
            f"uniform weight 1/{num_slots}.")


def unknown_soft_choice(which: object, choices: Sequence[str]) -> str:
    return f"unknown choice of slots {which!r}: choose one of {', '.join(choices)}"


# ------------------------------------------------------------------------------ classes
def class_status(method: str, seen: Sequence[str], head_top: Sequence[object] | None,
                 demo_names: Sequence[str] | None) -> str:
    """The classes tab's status: the method, the classes seen, an ImageNet head's own top classes
    (``head_top``) and, for the demo model (``demo_names``: its shapes), a warning first."""
    found = ", ".join(seen) or "none (no class reaches the head's threshold, so both masks are all background)"
    head = "" if head_top is None else " ImageNet head's top classes: " + ", ".join(str(p) for p in head_top) + "."
    warning = ""
    if demo_names is not None:
        warning = (f"⚠️ **The demo model knows only {len(demo_names)} generated shapes** ({', '.join(demo_names)}): "
                   "on a photo these scores and masks mean nothing. For photos, load an official "
                   "checkpoint (see the note under *Model*).\n\n")
    return f"{warning}Evidence method `{method}`; classes the model sees: {found}.{head} Evidence: 0 (dark) to 1 (yellow)."


# ------------------------------------------------------------------------------ files
def load_error(label: str, path: Path, exc: Exception) -> str:
    """One line naming the file (by its dropdown label, never a server folder) and the problem."""
    text = " ".join(str(exc).strip("'\"").split())  # one line
    for prefix in (str(path), str(Path(path).resolve())):
        if text.startswith(prefix):
            return label + text[len(prefix):]
    text = text.replace(str(path), label)
    return f"cannot load {label}: {text}"


def strip_dirs(message: str) -> str:
    """Show uploaded files by name only (not the server's temporary folders)."""
    words = []
    for word in message.split(" "):
        core = word.rstrip(":,;)")
        if os.sep in core and Path(core).name:
            word = Path(core).name + word[len(core):]
        words.append(word)
    return " ".join(words)
