"""The web app's hot path (issue 16): hard slot labels computed from the grid, the overlay drawn
once per block, and the caches that keep a long-running server's memory flat.

The fast hard labels must equal the reference rule (every slot's logits upsampled bilinearly, then
the argmax: :meth:`SlotMap.hard_upsampled`) except where two slots tie to float rounding: at most
a few pixels per image, and each of them on a boundary of the reference labels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation
from skimage.segmentation import find_boundaries

from glmix_vis.figures import render
from glmix_vis.figures.upsample import bilinear_axis, hard_labels
from glmix_vis.models.slots import SlotMap

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


# ------------------------------------------------------------------------------ the app
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


def test_picture_files_are_pruned(tmp_path, monkeypatch) -> None:
    """Gallery files unused for max_age_s are deleted (checked every 64 pictures)."""
    pytest.importorskip("gradio")
    import os
    import time

    from glmix_vis.app.serving import PictureFiles

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    files = PictureFiles(max_age_s=60)
    rng = np.random.default_rng(4)
    first = [files.save(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)) for _ in range(10)]
    old = time.time() - 120
    for p in first:
        os.utime(p, (old, old))
    for _ in range(54):  # the 64th save prunes
        files.save(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8))
    left = list(files.root.glob("*.jpg"))
    assert len(left) == 54 and not any(os.path.exists(p) for p in first)


def test_a_visitors_session_does_not_grow_with_uploads(backend, nano_checkpoint, tmp_path) -> None:
    """gradio keeps a copy of every component a callback updates in the visitor's session; an
    updated copy of a component that is also an input used to be stored again under a new id on
    every request (one dropdown per upload, eval/soak_app.py). Uploads must leave it as it was."""
    import socket

    from gradio_client import Client, handle_file
    from PIL import Image

    from glmix_vis.app import build_app
    from glmix_vis.app.serving import launch_options, queue_options

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_app(backend=backend)
    demo.queue(**queue_options())
    demo.launch(**launch_options(port=port, prevent_thread_lock=True, quiet=True))
    client = Client(demo.local_url, verbose=False, download_files=False)
    try:
        rng = np.random.default_rng(5)
        sizes = []
        for i in range(4):
            path = tmp_path / f"upload_{i}.png"
            Image.fromarray(rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)).save(path)
            status, gallery, *_ = client.predict(handle_file(str(path)), nano_checkpoint.name, 128, [0, 1], 1,
                                                 api_name="/analyze")
            assert len(gallery) == 2, status
            session = demo.state_holder.session_data[client.session_hash]
            sizes.append((len(session.blocks_config.blocks), len(session.config_values)))
        assert sizes[-1] == sizes[1], sizes
    finally:
        client.close()
        demo.close()



def test_gradio_keeps_message_queues_for_as_many_visitors_as_their_state() -> None:
    import gradio as gr

    from glmix_vis.app.serving import bound_session_queues

    with gr.Blocks() as demo:
        gr.Markdown("x")
    demo.queue()
    pending = demo._queue.pending_messages_per_session
    assert pending.max_size == 2000  # gradio's own bound, whatever state_session_capacity says
    assert bound_session_queues(demo, 32) and pending.max_size == 32
    for visitor in range(40):  # new visitors push out the oldest queues
        pending[f"visitor{visitor}"] = object()
    assert len(pending) == 32 and "visitor0" not in pending and "visitor39" in pending
    assert not bound_session_queues(object(), 32)  # no queue (or another gradio): nothing to do
