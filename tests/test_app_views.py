"""The web app's per-image views (:mod:`glmix_vis.app.views`): hard slot labels computed from the
grid and the overlay drawn once per block (issue 16), one soft-map scale in the app and the figure,
masks that stay visible over photos, one name per block (issue 14), and the caches that keep a
long-running server's memory flat.

The fast hard labels must equal the reference rule (every slot's logits upsampled bilinearly, then
the argmax: :meth:`SlotMap.hard_upsampled`) except where two slots tie to float rounding: at most
a few pixels per image, and each of them on a boundary of the reference labels.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import gradient_photo as _photo  # the same test photo in every app test
from scipy.ndimage import binary_dilation, maximum_filter
from skimage.segmentation import find_boundaries

from glmix_vis.data.palette import voc_palette
from glmix_vis.figures import render
from glmix_vis.figures.upsample import bilinear_axis, hard_labels
from glmix_vis.models.slots import SlotMap, block_label

GREY = 7  # VOC colour (128, 128, 128): the demo model's 'horse'
#: At most this fraction of the pixels may disagree with the reference, each within 1 px of its boundary.
MAX_DISAGREEMENT = 1e-4


def _reference(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The reference rule, through SlotMap itself."""
    s, h, w = logits.shape
    m = SlotMap(0, 0, (h, w), torch.from_numpy(logits).reshape(1, s, h * w), torch.zeros(1, s, 1), size)
    return m.hard_upsampled(size)[0].numpy()


def _check_close(fast: np.ndarray, ref: np.ndarray) -> None:
    assert fast.shape == ref.shape and fast.dtype == np.int16
    differ = fast != ref
    assert differ.mean() <= MAX_DISAGREEMENT, f"{differ.sum()} of {differ.size} pixels differ"
    # a pixel may only flip where the reference changes slot within one pixel (a tie on a boundary)
    near_boundary = binary_dilation(find_boundaries(ref, mode="thick"), iterations=1)
    assert not (differ & ~near_boundary).any()


def _smooth_logits(rng: np.random.Generator, slots: int, h: int, w: int, scale: float) -> np.ndarray:
    """Logits like a GLMix block's: smooth in space, many slots competing."""
    coarse = rng.normal(size=(slots, max(2, h // 3), max(2, w // 3))).astype(np.float32)
    up = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None], size=(h, w), mode="bicubic",
                                         align_corners=False)[0]
    return (up.numpy() + 0.3 * rng.normal(size=(slots, h, w)).astype(np.float32)) * scale


@pytest.mark.parametrize(("slots", "grid", "size"), [
    (16, (10, 10), (512, 512)),   # the demo model's last blocks at the app's display size
    (16, (40, 56), (467, 700)),   # block 0, a landscape photo
    (64, (14, 14), (448, 448)),   # an official model's last stage (64 slots)
    (64, (56, 40), (300, 214)),   # portrait, upsampled by a non-integer factor
    (8, (40, 40), (25, 31)),      # displayed smaller than the grid
    (5, (1, 7), (3, 50)),         # one grid row
])
def test_fast_hard_labels_match_the_bilinear_argmax(slots, grid, size) -> None:
    rng = np.random.default_rng(slots + grid[0])
    for scale in (1.0, 20.0):  # weak and strong slot preferences (the demo model's blocks span both)
        logits = _smooth_logits(rng, slots, *grid, scale)
        _check_close(hard_labels(logits, size), _reference(logits, size))


def test_a_slot_that_wins_only_between_grid_points_is_found() -> None:
    """Slot 2 is second at both grid points but first in between: an interpolation of the two
    winners' labels alone would miss it."""
    logits = np.zeros((3, 1, 2), np.float32)
    logits[0] = [[1.0, 0.0]]
    logits[1] = [[0.0, 1.0]]
    logits[2] = [[0.7, 0.7]]
    fast = hard_labels(logits, (1, 40))
    assert set(fast[0].tolist()) == {0, 1, 2}
    _check_close(fast, _reference(logits, (1, 40)))


def test_ties_and_constant_maps() -> None:
    flat = np.zeros((4, 6, 6), np.float32)  # every slot equal everywhere: the first slot, as argmax
    assert (hard_labels(flat, (30, 30)) == 0).all()
    one = np.full((1, 3, 3), 2.0, np.float32)
    assert (hard_labels(one, (7, 5)) == 0).all()
    with pytest.raises(ValueError, match="S, h, w"):
        hard_labels(np.zeros((3, 3), np.float32), (4, 4))


def test_axis_matches_torch_bilinear() -> None:
    """The index arrays reproduce PyTorch's align_corners=False sampling (a linear ramp checks the
    weights, not only the indices)."""
    for n_in, n_out in ((10, 512), (40, 467), (7, 3), (5, 5)):
        ramp = torch.arange(n_in, dtype=torch.float32) ** 2
        ref = torch.nn.functional.interpolate(ramp[None, None, None], size=(1, n_out), mode="bilinear",
                                              align_corners=False)[0, 0, 0].numpy()
        i0, i1, t = bilinear_axis(n_in, n_out)
        ours = ramp.numpy()[i0] * (1 - t) + ramp.numpy()[i1] * t
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
        assert not i0.flags.writeable and bilinear_axis(n_in, n_out)[0] is i0  # cached, shared read-only


def test_the_demo_model_on_a_photo_matches_the_reference(demo_predictor) -> None:
    """The bundled model's four blocks on a real photo, at the app's display size."""
    for m in demo_predictor.maps():
        logits = m.logits[0].float().reshape(m.num_slots, *m.grid).numpy()
        size = demo_predictor.image_size
        _check_close(hard_labels(logits, size), m.hard_upsampled(size)[0].numpy())


# ------------------------------------------------------------------------------ drawing
def test_inner_boundaries_equal_skimage() -> None:
    rng = np.random.default_rng(0)
    for shape, k in (((40, 50), 5), ((1, 30), 3), ((17, 1), 2), ((64, 64), 40)):
        labels = rng.integers(0, k, size=shape)
        labels = np.repeat(np.repeat(labels, 2, 0), 3, 1)  # regions wider than a pixel as well
        for lab in (labels, labels.astype(np.int16)):
            assert np.array_equal(render.inner_boundaries(lab),
                                  find_boundaries(lab, mode="inner", background=-1))


def _old_overlay(image: np.ndarray, hard: np.ndarray, colors: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """How overlay_slots drew before issue 16 (a float blend of the whole image, skimage's outlines)."""
    def blend(base, color, a):
        out = base.astype(np.float32) * (1.0 - a) + color.astype(np.float32) * a
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    labels = render.resize_labels(hard.astype(np.int64), image.shape[:2])
    out = blend(image, colors[labels], alpha)
    edges = find_boundaries(labels, mode="inner", background=-1)
    out[edges] = blend(out[edges], np.array(render.BOUNDARY_COLOR, np.uint8), render.BOUNDARY_ALPHA)
    return out


def test_slot_overlay_draws_exactly_what_it_drew_before() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)
    colors = render.slot_palette(16)[:16]
    hard = rng.integers(0, 16, size=(15, 30)).astype(np.int16)
    overlay = render.SlotOverlay(image)
    for h in (hard, hard[::-1], np.zeros((60, 90), np.int16)):  # shared base, several blocks
        assert np.array_equal(overlay.draw(h, colors), _old_overlay(image, h, colors))
    assert np.array_equal(render.overlay_slots(image, hard, colors), _old_overlay(image, hard, colors))
    plain = overlay.draw(hard, colors, boundaries=False)
    assert not np.array_equal(plain, overlay.draw(hard, colors))
    with pytest.raises(ValueError, match="one colour each"):
        overlay.draw(hard, colors[:3])


# ------------------------------------------------------------------------------ the app's overlays and caches
@pytest.fixture(scope="module")
def demo_predictor():
    from skimage.data import astronaut

    from glmix_vis.predictor import SlotPredictor

    pred = SlotPredictor.from_checkpoint(None, device="cpu")
    pred.set_image(np.ascontiguousarray(astronaut()[40:360:2, 60:480:2]))  # 160 x 210: a real photo, small
    return pred


def test_app_overlays_match_the_reference_rendering(backend, nano_checkpoint) -> None:
    """What a visitor sees: the backend's overlays against the reference path (full-size bilinear
    logits, argmax, the old renderer) differ in at most a few boundary pixels."""
    from skimage.data import chelsea

    label = nano_checkpoint.name
    photo = np.ascontiguousarray(chelsea()[::3, ::3])
    result = backend.analysis(photo, label, None)
    blocks = list(range(len(result.loaded.block_names)))
    pictures = [p for p, _ in backend.overlay_pictures(result, blocks)]
    shown = result.shown
    ref_hard = [m.hard_upsampled(shown.shape[:2])[0].numpy() for m in result.predictor.maps(blocks)]
    ref_colors = render.tracked_slot_colors(ref_hard, [result.loaded.num_slots[b] for b in blocks])
    for picture, hard, colors in zip(pictures, ref_hard, ref_colors):
        reference = _old_overlay(shown, hard, colors)
        assert picture.shape == reference.shape
        assert (picture != reference).any(axis=2).mean() <= 4 * MAX_DISAGREEMENT


def test_caches_stay_bounded(backend, nano_checkpoint, monkeypatch) -> None:
    """Many distinct uploads leave at most the result cache's capacity of forward passes, each with
    one hard map per block it showed, and at most MAX_FIGURES figure files."""
    import glmix_vis.app.backend as backend_module

    monkeypatch.setattr(backend_module, "MAX_FIGURES", 2)  # the rule, not the number: fewer figures to draw
    label = nano_checkpoint.name
    capacity = backend.results.capacity
    rng = np.random.default_rng(3)
    for i in range(capacity + 4):
        photo = rng.integers(0, 256, size=(40 + i, 50, 3), dtype=np.uint8)
        status, items = backend.slot_overlays(photo, label, None, [0, 1])
        assert len(items) == 2, status
    assert len(backend.results) == capacity
    for key in backend.results.keys():
        memo = backend.results.get(key).memo
        assert sorted(k[1] for k in memo if k[0] == "hard") == [0, 1]
    for i in range(4):
        path, status = backend.figure(rng.integers(0, 256, size=(32, 32 + i, 3), dtype=np.uint8), label, None,
                                      [0], 0, "cam", "slots")
        assert path, status
    files = [p for p in backend.figure_dir.rglob("*") if p.is_file()]
    assert len(files) == 2
    assert bilinear_axis.cache_info().currsize <= bilinear_axis.cache_info().maxsize




# ------------------------------------------------------------------------------ one soft-map scale
def test_soft_map_scale_rule_runs_from_zero_to_the_maps_own_peak():
    image = np.full((10, 20, 3), 90, np.uint8)
    weights = np.tile(np.linspace(0.0, 0.3, 20, dtype=np.float32), (10, 1))
    top = render.heatmap_overlay(image, np.ones((10, 20)), render.SOFT_CMAP, render.SOFT_ALPHA)
    bottom = render.heatmap_overlay(image, np.zeros((10, 20)), render.SOFT_CMAP, render.SOFT_ALPHA)
    own = render.soft_map_overlay(image, weights)
    assert np.array_equal(own[:, -1], top[:, -1]) and np.array_equal(own[:, 0], bottom[:, 0])
    given = render.soft_map_overlay(image, weights, peak=0.6)
    assert np.array_equal(given, render.heatmap_overlay(image, weights / 0.6, render.SOFT_CMAP, render.SOFT_ALPHA))
    assert np.array_equal(render.soft_map_overlay(image, np.zeros((10, 20))), bottom)  # no peak: stays dark


def test_soft_maps_start_at_the_uniform_weight_so_a_flat_slot_stays_dark():
    """Issue 24: with 64 slots a near-uniform slot (peak 1/64) looked as bright as one owning a region."""
    image = np.full((10, 20, 3), 90, np.uint8)
    bottom = render.heatmap_overlay(image, np.zeros((10, 20)), render.SOFT_CMAP, render.SOFT_ALPHA)
    top = render.heatmap_overlay(image, np.ones((10, 20)), render.SOFT_CMAP, render.SOFT_ALPHA)
    flat = np.full((10, 20), 1 / 64, np.float32)
    flat[:, -1] = 1.05 / 64  # its peak: barely above uniform
    shown = render.soft_map_overlay(image, flat, num_slots=64)
    dim = render.heatmap_overlay(image, np.full((10, 20), 0.05), render.SOFT_CMAP, render.SOFT_ALPHA)
    assert np.array_equal(shown[:, -1], dim[:, -1])  # its peak at 5% of the scale: dark, not stretched to yellow
    owning = np.full((10, 20), 0.2 / 63, np.float32)
    owning[:, -1] = 0.8  # owns the last column
    shown = render.soft_map_overlay(image, owning, num_slots=64)
    assert np.array_equal(shown[:, -1], top[:, -1]) and np.array_equal(shown[:, 0], bottom[:, 0])
    weak = np.full((10, 20), 1 / 16, np.float32)
    weak[:, -1] = 1.5 / 16  # 1.5x uniform: half-way up the floor's scale (1/S to 2/S), not yellow
    half = render.heatmap_overlay(image, np.full((10, 20), 0.5), render.SOFT_CMAP, render.SOFT_ALPHA)
    assert np.array_equal(render.soft_map_overlay(image, weak, num_slots=16)[:, -1], half[:, -1])


def _off_scale(picture: np.ndarray, shown: np.ndarray, soft: np.ndarray, peak: float, num_slots: int) -> float:
    """How far (max channel difference) the map's brightest pixel is from its colour on the one scale:
    from 1/S to the slot's peak on the token grid (at least 2/S), whatever size the map is drawn at."""
    y, x = np.unravel_index(int(np.argmax(soft)), soft.shape)
    low, top = 1 / num_slots, max(peak, render.SOFT_MIN_CONTRAST / num_slots)
    level = np.full(soft.shape, np.clip((soft[y, x] - low) / (top - low), 0, 1))
    want = render.heatmap_overlay(shown, level, render.SOFT_CMAP, render.SOFT_ALPHA)
    return float(np.abs(picture[y, x].astype(int) - want[y, x].astype(int)).max())


def test_app_and_exported_figure_colour_a_slot_on_the_same_scale(backend, nano_checkpoint):
    from glmix_vis.figures import soft_slot_maps
    from glmix_vis.io import downscale_to

    label, block = nano_checkpoint.name, 1
    img = _photo()
    text, items = backend.soft_maps(img, label, None, block)
    assert "from the uniform weight 1/" in text
    result = backend.analysis(img, label, None)
    m = result.predictor.maps([block])[0]
    peaks = m.dispatch[0].flatten(1).amax(1).numpy()
    assert peaks.max() < 0.8  # a scale fixed at 0-1 would leave these maps dark
    shown = downscale_to(result.shown, 512)
    soft = m.upsample(shown.shape[:2])[0].numpy()
    slot, num = int(items[-1][1].split()[1]), m.num_slots  # the smallest slot: dark on a scale shared by all
    assert f"peak {peaks[slot]:.2f} = " in items[-1][1]
    assert _off_scale(items[-1][0], shown, soft[slot], peaks[slot], num) <= 12  # its brightest pixel: 1/S to peak

    fig = soft_slot_maps(result.predictor, blocks=[block], slots=[slot, int(items[0][1].split()[1])], dpi=80)
    panels = [ax for ax in fig.axes if ax.images]
    titles = [t.get_text() for ax in panels for t in ax.texts]
    assert any(f"peak {peaks[slot]:.2f}" in t for t in titles), titles
    picture = np.asarray(panels[1].images[0].get_array())
    small = render.resize_image(result.predictor.image, picture.shape[:2])
    fig_soft = m.upsample(picture.shape[:2])[0, slot].numpy()
    assert _off_scale(picture, small, fig_soft, peaks[slot], num) <= 12  # the same slot looks the same in the figure
    bars = [ax.get_ylabel() for ax in fig.axes if not ax.images and ax.get_ylabel()]
    assert len(bars) == 1 and bars[0] in render.SOFT_SCALE_LABELS, bars


# ------------------------------------------------------------------------------ masks over photos
@pytest.mark.parametrize("value", [0, 128, 255])
def test_grey_class_regions_stay_visible_on_any_photo(value):
    palette = voc_palette()
    assert palette[GREY].tolist() == [128, 128, 128]  # the saved masks' palette is not touched
    mask = np.zeros((60, 80), np.uint8)
    mask[15:45, 20:60] = GREY
    photo = np.full((60, 80, 3), value, np.uint8)
    over = render.mask_overlay(photo, mask, palette)
    diff = np.abs(over.astype(int) - photo.astype(int)).max(axis=2)
    edge = find_boundaries(mask, mode="inner") & (mask == GREY)
    # next to every pixel of the region's edge, the picture differs from the photo by 100+ levels
    assert maximum_filter(diff, size=3)[edge].min() >= 100
    assert np.array_equal(over[0, 0], photo[0, 0])  # background untouched


def test_low_chroma_colours_are_filled_more_opaquely():
    alpha = render.mask_alpha(voc_palette())
    assert alpha[GREY] > alpha[1] and alpha[1] == render.MASK_ALPHA  # grey 'horse' vs red
    assert alpha[8] > render.MASK_ALPHA  # dark (64, 0, 0)


def test_app_masks_have_outlines_and_the_grey_class_more_opacity():
    from glmix_vis.app.views import annotated

    image = np.full((60, 80, 3), 128, np.uint8)
    mask = np.zeros((60, 80), np.uint8)
    mask[10:30, 10:30] = 1
    mask[35:55, 40:70] = GREY
    names = ["background", "red", "b", "c", "d", "e", "f", "grey"]
    pred = SimpleNamespace(image=image, info=SimpleNamespace(class_names=names))
    base, regions = annotated(pred, mask)
    assert base.shape == image.shape and not np.array_equal(base, image)
    assert (base != image).any(axis=2)[find_boundaries(mask == GREY, mode="inner")].all()  # outlined
    opacity = {name: float(m.max()) for m, name in regions}
    assert set(opacity) == {"red", "grey"} and opacity["grey"] > opacity["red"] > 0


# ------------------------------------------------------------------------------ one name per block
def test_block_label_is_the_one_block_name():
    m = SlotMap(stage=2, block=2, grid=(2, 2), logits=torch.zeros(1, 4, 4), slots=torch.zeros(1, 4, 8),
                input_size=(64, 64))
    assert block_label(3, m) == "block 3 (stage 3)"
    assert block_label(3, m, with_path=True) == "block 3 (stage 3) = stages.2.blocks.2"  # both names, for the picker


def test_app_names_every_block_with_block_label(backend, nano_checkpoint):
    label = nano_checkpoint.name
    img = _photo()
    loaded = backend.model(label)
    result = backend.analysis(img, label, None)
    maps = result.predictor.maps(list(range(len(loaded.block_names))))
    names = [block_label(i, m) for i, m in enumerate(maps)]
    assert loaded.block_labels == names
    choices = backend.model_settings(label)["block_choices"]
    assert [c for c, _ in choices] == [f"{n} · {s} slots" for n, s in zip(names, loaded.num_slots)]
    _, items = backend.slot_overlays(img, label, None, [0, 2])
    assert [c.split(" · ")[0] for _, c in items] == [names[0], names[2]]
    text, _ = backend.soft_maps(img, label, None, 2)
    detail = backend.slot_detail(img, label, None, 2, 0)
    assert text.startswith(names[2].capitalize()) and f"**{names[2].capitalize()}, slot" in detail
    everything = " ".join([*(c for c, _ in choices), *(c for _, c in items), text, detail])
    assert "stages." not in everything  # the module path is for code, not for readers...
    # ...and the block picker's info says it once, beside each block's name
    info = backend.model_settings(label)["blocks_info"]
    paths = [block_label(i, m, with_path=True) for i, m in enumerate(maps)]
    assert all(info.count(p) == 1 for p in paths) and info.count("stages.") == len(paths), info
    assert all(loaded.block_names[i] in p for i, p in enumerate(paths))
