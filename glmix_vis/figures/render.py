"""Pure-numpy image rendering shared by the figures and the web app: no matplotlib figures.

Every function takes an ``(H, W, 3)`` uint8 RGB image and returns a new one of the same
size; label and score maps of another size are resized to the image first (nearest for
labels, bilinear for scores).

Two rules live here so that the app and the figures cannot disagree:

* soft (dispatch) maps: each slot's map is coloured from the uniform weight 1/S (dark: the slot
  claims the pixel no more than any other) to its own peak, and never to less than
  :data:`SOFT_MIN_CONTRAST` times 1/S, so a near-uniform slot stays dark instead of being stretched
  to full yellow (:func:`soft_map_overlay`; the peak is written beside the map,
  :data:`SOFT_SCALE_LABELS` name the scale);
* pseudo-masks: class colours with little chroma (grey, dark tones) are filled more opaquely and
  every class region gets a dark-and-white outline (:func:`mask_alpha`, :func:`outline_regions`),
  so that no class disappears into a photo. Only the display changes: saved masks keep the VOC
  palette.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy.ndimage import binary_dilation
from skimage.transform import resize

from .palette import slot_palette
from .tracking import resize_labels, track_slot_colors

__all__ = [
    "SlotOverlay",
    "apply_colormap",
    "colorize_mask",
    "display_size",
    "enlarge_to",
    "heatmap_overlay",
    "inner_boundaries",
    "mask_alpha",
    "mask_overlay",
    "outline_regions",
    "overlay_slots",
    "resize_image",
    "resize_labels",
    "SOFT_MIN_CONTRAST",
    "soft_map_overlay",
    "tracked_slot_colors",
]

#: Slot and class boundaries: white, nearly opaque (reads on every overlay colour).
BOUNDARY_COLOR = (255, 255, 255)
BOUNDARY_ALPHA = 0.85

#: Soft maps: colormap and opacity over the grey photo, in the app and the figures alike.
SOFT_CMAP = "viridis"
SOFT_ALPHA = 0.7
#: What the soft-map colours mean (colourbar label candidates, longest first).
SOFT_SCALE_LABELS = ("dispatch weight, uniform 1/S to the slot's peak", "weight, 1/S to slot's peak",
                     "weight, 1/S to peak", "1/S to peak")
#: A soft map's yellow end is at least this multiple of the uniform weight 1/S: a slot whose peak is
#: barely above 1/S owns nothing and must not look like one that owns a region.
SOFT_MIN_CONTRAST = 2.0

#: Pseudo-mask fill opacity; colours whose chroma (max - min channel, of 255) is below
#: LOW_CHROMA (grey 'horse' (128, 128, 128), dark 'cat' (64, 0, 0), ...) get LOW_CHROMA_ALPHA.
MASK_ALPHA = 0.55
LOW_CHROMA = 80
LOW_CHROMA_ALPHA = 0.8
#: Region outlines: a dark line on the region's edge, a white one around it (reads on any photo).
OUTLINE_DARK = (0, 0, 0)
OUTLINE_LIGHT = (255, 255, 255)
OUTLINE_ALPHA = 0.9


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
    return image


def display_size(shape: Sequence[int], max_side: int) -> tuple[int, int]:
    """``(h, w)`` with the aspect ratio of ``shape`` and the longer side at most ``max_side``."""
    h, w = int(shape[0]), int(shape[1])
    scale = min(1.0, max_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_image(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Antialiased resize of an ``(H, W, 3)`` uint8 image to ``size`` ``(h, w)``."""
    image = _check_image(image)
    if tuple(image.shape[:2]) == tuple(size):
        return image
    out = resize(image, tuple(size), order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def enlarge_to(image: np.ndarray, min_side: int) -> np.ndarray:
    """The image with its longer side raised to ``min_side`` (antialiased); never made smaller.

    Small images are shown enlarged (the web app's display size); the image itself is returned
    when it is large enough already.
    """
    image = _check_image(image)
    scale = min_side / max(image.shape[:2])
    if scale <= 1:
        return image
    return resize_image(image, (round(image.shape[0] * scale), round(image.shape[1] * scale)))


def _blend(base: np.ndarray, color: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    out = base.astype(np.float32) * (1.0 - alpha) + color.astype(np.float32) * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def inner_boundaries(labels: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: the pixels of each region that touch another region (4-neighbourhood), every
    label a region (skimage's ``find_boundaries(labels, mode="inner", background=-1)``)."""
    labels = np.asarray(labels)
    edges = np.zeros(labels.shape, bool)
    across = labels[:, 1:] != labels[:, :-1]
    edges[:, 1:] |= across
    edges[:, :-1] |= across
    down = labels[1:] != labels[:-1]
    edges[1:] |= down
    edges[:-1] |= down
    return edges


class SlotOverlay:
    """Hard slot groups drawn over one image, as many times as there are blocks to show: the
    image's share of the blend is computed once (:func:`overlay_slots` draws one).

    Every pixel is ``rint(image * (1 - alpha) + colour * alpha)`` in float32, the outlines
    blended again with :data:`BOUNDARY_COLOR`, exactly as :func:`overlay_slots` always drew them.
    """

    def __init__(self, image: np.ndarray, alpha: float = 0.45) -> None:
        self.image = _check_image(image)
        self.alpha = alpha
        self._base = self.image.astype(np.float32) * (1.0 - alpha)

    def draw(self, hard: np.ndarray, slot_colors: np.ndarray, boundaries: bool = True) -> np.ndarray:
        """``(H, W, 3)`` uint8: ``hard`` (``(h, w)`` int slot labels, resized to the image, nearest)
        in ``slot_colors`` (``(S, 3)`` uint8 RGB, e.g. ``palette[tracked]``), outlines drawn."""
        labels = np.asarray(hard)
        labels = resize_labels(labels if labels.dtype.kind in "iu" else labels.astype(np.int64), self.image.shape[:2])
        colors = np.asarray(slot_colors, dtype=np.uint8).reshape(-1, 3)
        if labels.size and (labels.min() < 0 or labels.max() >= len(colors)):
            raise ValueError(f"slot labels must lie in 0..{len(colors) - 1} (one colour each), "
                             f"got {labels.min()}..{labels.max()}")
        mixed = np.take(colors.astype(np.float32) * self.alpha, labels, axis=0)  # the colour's share, per slot
        mixed += self._base
        out = np.rint(mixed, out=mixed).astype(np.uint8)  # a convex mix of 0..255: no clipping needed
        if boundaries:  # by flat index: far cheaper than a boolean mask over (H, W, 3)
            pixels = out.reshape(-1, 3)
            edges = np.flatnonzero(inner_boundaries(labels))
            pixels[edges] = _blend(np.take(pixels, edges, axis=0), np.array(BOUNDARY_COLOR, np.uint8),
                                   BOUNDARY_ALPHA)
        return out


def overlay_slots(image: np.ndarray, hard: np.ndarray, slot_colors: np.ndarray, alpha: float = 0.45,
                  boundaries: bool = True) -> np.ndarray:
    """Hard slot groups as a translucent colour overlay, with the group outlines drawn.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        hard: ``(h, w)`` int slot labels (resized to the image, nearest).
        slot_colors: ``(S, 3)`` uint8 RGB colour of each slot (e.g. ``palette[tracked]``).
        alpha: opacity of the colour fill.
        boundaries: draw the outline of every group.
    """
    return SlotOverlay(image, alpha).draw(hard, slot_colors, boundaries)


def tracked_slot_colors(hard_maps: Sequence[np.ndarray], num_slots: Sequence[int]) -> list[np.ndarray]:
    """``(S_b, 3)`` uint8 colours of every block's slots: the slot palette, with each group keeping
    its colour from block to block (:func:`~glmix_vis.figures.tracking.track_slot_colors`)."""
    colors = slot_palette(max(num_slots, default=0))
    index = track_slot_colors(hard_maps, num_slots, num_colors=len(colors))
    return [colors[i] for i in index]


@lru_cache(maxsize=16)
def _lut(cmap: str) -> np.ndarray:
    import matplotlib

    table = matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3]
    return np.rint(table * 255).astype(np.uint8)


def apply_colormap(map01: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """``(H, W, 3)`` uint8 colours of a map in [0, 1] (values outside are clipped, NaN -> 0)."""
    values = np.nan_to_num(np.asarray(map01, dtype=np.float32), nan=0.0)
    idx = np.rint(np.clip(values, 0.0, 1.0) * 255).astype(np.int64)
    return _lut(cmap)[idx]


def heatmap_overlay(image: np.ndarray, map01: np.ndarray, cmap: str = "viridis", alpha: float = 0.6,
                    gray_base: bool = True) -> np.ndarray:
    """A [0, 1] map over the image in a perceptually uniform colormap.

    ``gray_base`` shows the photo underneath in grey, so every hue on the panel comes from the
    map and reads against the colourbar.
    """
    image = _check_image(image)
    values = np.asarray(map01, dtype=np.float32)
    if values.shape != image.shape[:2]:
        values = resize(values, image.shape[:2], order=1, anti_aliasing=False, preserve_range=True)
    base = image
    if gray_base:
        luma = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        base = np.repeat(np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return _blend(base, apply_colormap(values, cmap), alpha)


def soft_map_overlay(image: np.ndarray, weights: np.ndarray, peak: float | None = None, cmap: str = SOFT_CMAP,
                     alpha: float = SOFT_ALPHA, num_slots: int | None = None) -> np.ndarray:
    """The one colour scale of a slot's soft (dispatch) map, in the app and the figures alike.

    The map is coloured from the uniform weight ``1 / num_slots`` (dark) to ``peak`` (yellow): its
    own largest weight unless given (pass the slot's largest weight on the token grid, so that the
    map looks the same at every display size), raised to :data:`SOFT_MIN_CONTRAST` / ``num_slots``
    when lower. Without ``num_slots`` the scale starts at 0. Say the peak beside the picture: without
    it the colours have no units (:data:`SOFT_SCALE_LABELS`). A map that is 0 everywhere stays dark.
    """
    values = np.nan_to_num(np.asarray(weights, dtype=np.float32), nan=0.0)
    top = float(values.max(initial=0.0)) if peak is None else float(peak)
    low = 0.0
    if num_slots:
        low = 1.0 / num_slots
        top = max(top, SOFT_MIN_CONTRAST * low)
    scaled = (values - low) / (top - low) if top > low else np.zeros_like(values)
    return heatmap_overlay(image, np.clip(scaled, 0.0, 1.0), cmap, alpha)


def colorize_mask(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8: each class index painted with ``palette[index]`` (e.g. VOC's colours)."""
    pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    mask = np.asarray(mask)
    if mask.size and (mask.min() < 0 or mask.max() >= len(pal)):
        raise ValueError(f"mask values must lie in 0..{len(pal) - 1}")
    return pal[mask.astype(np.int64)]


def mask_alpha(palette: np.ndarray, alpha: float = MASK_ALPHA) -> np.ndarray:
    """``(K,)`` fill opacity of each palette colour over a photo: ``alpha``, raised to
    :data:`LOW_CHROMA_ALPHA` for colours with little chroma (a grey or dark tint over a photo looks
    like the photo itself; opaque, it reads as paint)."""
    pal = np.asarray(palette, dtype=np.int16).reshape(-1, 3)
    chroma = pal.max(axis=1) - pal.min(axis=1)
    return np.where(chroma < LOW_CHROMA, max(alpha, LOW_CHROMA_ALPHA), alpha).astype(np.float32)


def outline_regions(image: np.ndarray, labels: np.ndarray, background: int | None = 0,
                    width: int | None = None) -> np.ndarray:
    """The image with the outline of every class region drawn: a dark line along the region's edge
    and a white line around that, so that it reads on any photo (a line of one colour vanishes
    where the photo has that colour). Regions of class ``background`` get none.

    ``width``: of each line, in pixels (default: 1 per 300 pixels of the longer side, at least 1).
    """
    image = _check_image(image)
    labels = resize_labels(np.asarray(labels, dtype=np.int64), image.shape[:2])
    w = width if width is not None else max(1, round(max(image.shape[:2]) / 300))
    inside = labels != background if background is not None else np.ones(labels.shape, bool)
    dark = inner_boundaries(labels) & inside
    if w > 1 and dark.any():
        dark = binary_dilation(dark, iterations=w - 1) & inside
    light = binary_dilation(dark, iterations=w) & ~dark if dark.any() else dark
    out = image.copy()
    out[dark] = _blend(out[dark], np.array(OUTLINE_DARK, np.uint8), OUTLINE_ALPHA)
    out[light] = _blend(out[light], np.array(OUTLINE_LIGHT, np.uint8), OUTLINE_ALPHA)
    return out


def mask_overlay(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = MASK_ALPHA,
                 background: int | None = 0, boundaries: bool = True) -> np.ndarray:
    """A class mask over the image: class pixels tinted with their palette colour.

    Pixels of class ``background`` (``None``: none) are left as they are, so the photo shows
    where the mask says "nothing"; colours with little chroma are tinted more opaquely
    (:func:`mask_alpha`) and ``boundaries`` outlines every class region (:func:`outline_regions`).
    """
    image = _check_image(image)
    labels = resize_labels(np.asarray(mask, dtype=np.int64), image.shape[:2])
    colored = colorize_mask(labels, palette)
    weight = mask_alpha(palette, alpha)[labels][..., None]
    if background is not None:
        weight[labels == background] = 0.0
    out = _blend(image, colored, weight)
    return outline_regions(out, labels, background) if boundaries else out
