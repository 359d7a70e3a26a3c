"""The web app's callbacks without a browser (:class:`glmix_vis.app.SlotApp`): on arrays, files and
broken bytes; the model cache and the evidence methods it lists; what a model is said to know;
figures of the open view; and every failure as a one-line message."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")

from helpers import gradient_photo as _photo  # noqa: E402  the same test photo in every app test

from glmix_vis import app as webapp  # noqa: E402
from glmix_vis.app import DEMO_LABEL, ModelCache, SlotApp  # noqa: E402
from glmix_vis.loading import load_model  # noqa: E402
from glmix_vis.models.checkpoints import save_safetensors  # noqa: E402
from glmix_vis.models.factory import create_model  # noqa: E402
from glmix_vis.models.slots import resolve_blocks  # noqa: E402

CLASSES = ["background", "disk", "square", "star"]  # the classes of the nano_checkpoint fixture (conftest.py)
pytestmark = pytest.mark.usefixtures("checkpoint_dir")  # never the user's real checkpoint folder


@pytest.fixture(scope="module")
def label(backend, nano_checkpoint) -> str:
    return nano_checkpoint.name


def _shown(shape: tuple[int, ...], side: int = 256) -> tuple[int, int, int]:
    """The size overlays are drawn at: small images are enlarged to ``side`` (the backend's max_side)."""
    h, w = shape[:2]
    scale = max(1.0, side / max(h, w))
    return round(h * scale), round(w * scale), 3


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


# ------------------------------------------------------------------------------ which models


def test_no_model_at_all_is_a_clear_error(monkeypatch):
    import glmix_vis.assets

    def missing():
        raise FileNotFoundError("not installed")

    monkeypatch.setattr(glmix_vis.assets, "default_checkpoint", missing)
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        SlotApp()


def test_only_listed_models_can_be_loaded(backend, nano_checkpoint):
    img = _photo()
    for bad in ("/etc/passwd", str(nano_checkpoint), "../nano_test.safetensors", "", None, 3):
        status, items = backend.slot_overlays(img, bad, None, [0])
        assert status.startswith("**Error:**") and "unknown model" in status and items == []


def test_unloadable_checkpoint_gives_a_message(checkpoint_dir):
    (checkpoint_dir / "broken.safetensors").write_bytes(b"not a checkpoint")
    app = SlotApp(checkpoint_dir / "broken.safetensors")
    status, items = app.slot_overlays(_photo(), "broken.safetensors", None, [0])
    assert status == ("**Error:** broken.safetensors is a text file, not a checkpoint "
                      "(starts with b'not a checkpoint')") and items == []
    assert str(checkpoint_dir) not in status  # the server's folders stay private


# ------------------------------------------------------------------------------ the model cache
def test_model_cache_loads_each_checkpoint_once_and_evicts_the_oldest(nano_checkpoint, tmp_path):
    other = tmp_path / "copy.safetensors"
    other.write_bytes(nano_checkpoint.read_bytes())
    calls = []

    def loader(path, device="cpu"):
        calls.append(Path(path).name)
        return load_model(path, device=device)

    cache = ModelCache(capacity=1, device="cpu", loader=loader)
    first = cache.get(nano_checkpoint)
    assert cache.get(nano_checkpoint) is first and calls == ["nano_test.safetensors"]
    assert first.block_names and len(first.num_slots) == len(first.block_names) and first.has_classifier
    cache.get(other)
    assert len(cache) == 1 and calls == ["nano_test.safetensors", "copy.safetensors"]
    assert cache.get(nano_checkpoint) is not first and len(calls) == 3  # evicted, loaded again


def test_concurrent_first_requests_load_the_model_once(nano_checkpoint):
    calls = []

    def loader(path, device="cpu"):
        calls.append(path)
        return load_model(path, device=device)

    cache = ModelCache(capacity=2, device="cpu", loader=loader)
    threads = [threading.Thread(target=cache.get, args=(nano_checkpoint,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1


def test_listed_methods_are_the_ones_eval_accepts(nano_checkpoint, monkeypatch):
    """One rule for "which evidence methods serve this model" (glmix_vis.wsss.evidence.usable): the
    app lists exactly the methods whose check passes, and the blank pass runs through the network
    runner in the model's precision."""
    import torch

    from glmix_vis.devices import network_precision
    from glmix_vis.wsss.evidence import available_evidence_methods, get_evidence_method
    from glmix_vis.wsss.evidence import usable as usable_module
    from glmix_vis.wsss.evidence.usable import check_method, usable_methods

    model, info = load_model(nano_checkpoint, device="cpu")
    listed = ModelCache(device="cpu").get(nano_checkpoint).evidence_methods
    assert listed == usable_methods(model, available_evidence_methods(), class_map=info.class_map)
    assert "token" not in listed and "slot-cam" in listed
    with pytest.raises(ValueError):  # the reason eval prints for the same refusal
        check_method(model, get_evidence_method("token"))
    seen = []
    real = usable_module.run_slots

    def spy(m, images):
        seen.append(network_precision())
        return real(m, images)

    monkeypatch.setattr(usable_module, "run_slots", spy)
    assert ModelCache(device="cpu", precision="bf16").get(nano_checkpoint).evidence_methods == listed
    assert seen == [torch.bfloat16]


def test_forward_pass_is_reused_across_callbacks(backend, label):
    img = _photo(80, 80)
    backend.slot_overlays(img, label, None, [0])
    first = backend.analysis(img, label, None)
    backend.soft_maps(img, label, None, 0)
    assert backend.analysis(img, label, None) is first
    assert backend.analysis(img, label, 160) is not first  # another input size is another pass


# ------------------------------------------------------------------------------ the callbacks
def test_overlays_on_an_array(backend, label):
    img = _photo()
    n = len(backend.model(label).block_names)
    status, items = backend.slot_overlays(img, label, None, list(range(n)))
    assert len(items) == n and "128×96 px image" in status and "network input 160×128" in status
    labels = backend.model(label).block_labels
    for b, (picture, caption) in enumerate(items):
        assert picture.shape == _shown(img.shape) and picture.dtype == np.uint8
        assert caption.startswith(f"{labels[b]} · ") and caption.endswith(" slots")
    assert not np.array_equal(items[0][0], img)


def test_slot_colours_follow_the_figures_palette(backend, label):
    from glmix_vis.figures import palette

    result = backend.analysis(_photo(), label, None)
    colors = backend.slot_colors(result, [0, 1])
    allowed = {tuple(c) for c in palette.slot_palette(64)}
    for block, c in zip([0, 1], colors):
        assert c.shape == (result.loaded.num_slots[block], 3)
        assert {tuple(x) for x in c} <= allowed
        assert len({tuple(x) for x in c}) == len(c)  # distinct within a block


@pytest.mark.parametrize("kind", ["gray", "rgba", "uint16", "cmyk_jpeg", "exif_rotated", "palette_png"])
def test_every_image_kind_is_read(backend, label, kind):
    rgb = _photo(60, 90)
    if kind == "gray":
        src, shape = rgb[..., 0].copy(), (60, 90)
    elif kind == "rgba":
        src, shape = np.dstack([rgb, np.full((60, 90), 128, np.uint8)]), (60, 90)
    elif kind == "uint16":
        src, shape = _encode(Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), "PNG"), (60, 90)
    elif kind == "cmyk_jpeg":
        src, shape = _encode(Image.fromarray(rgb).convert("CMYK"), "JPEG"), (60, 90)
    elif kind == "exif_rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees: the image is shown 90 wide, 60 high -> 90x60
        src, shape = _encode(Image.fromarray(rgb), "JPEG", exif=exif.tobytes()), (90, 60)
    else:
        src, shape = _encode(Image.fromarray(rgb).convert("P"), "PNG"), (60, 90)
    status, items = backend.slot_overlays(src, label, None, [0])
    assert not status.startswith("**Error"), status
    assert items[0][0].shape == _shown(shape)


@pytest.mark.parametrize("data", [b"", b"garbage, not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40],
                         ids=["empty", "garbage", "bad-png"])
def test_corrupt_bytes_give_a_message_not_an_exception(backend, label, data):
    status, items = backend.slot_overlays(data, label, None, [0])
    assert status.startswith("**Error:**") and items == []


def test_truncated_upload_and_missing_file_give_messages(backend, label, tmp_path):
    path = tmp_path / "upload" / "holiday.jpg"
    path.parent.mkdir()
    path.write_bytes(_encode(Image.fromarray(_photo(200, 200)), "JPEG")[:300])
    status, items = backend.slot_overlays(str(path), label, None, [0])
    assert status.startswith("**Error:** holiday.jpg") and str(tmp_path) not in status and items == []
    status, _ = backend.slot_overlays(str(tmp_path / "gone.png"), label, None, [0])
    assert "gone.png: no such file" in status
    assert backend.slot_overlays(None, label, None, [0]) == ("", [])


def test_big_images_are_downscaled_and_bombs_refused(backend, label, nano_checkpoint):
    status, items = backend.slot_overlays(np.zeros((1200, 600, 3), np.uint8), label, None, [0])
    assert items[0][0].shape == (256, 128, 3) and "128×256 px image (width×height, downscaled from 600×1200)" in status
    strict = SlotApp(nano_checkpoint, max_pixels=10_000, device="cpu")
    status, items = strict.slot_overlays(_encode(Image.new("RGB", (200, 100)), "PNG"), label, None, [0])
    assert "exceeds the limit" in status and items == []


def test_unexpected_errors_are_logged_and_shown_as_a_message(backend, label, monkeypatch, caplog):
    def broken(self, block):
        raise RuntimeError("boom")

    monkeypatch.setattr(webapp.Analysis, "hard", broken)
    status, items = backend.slot_overlays(_photo(50, 70), label, None, [0])
    assert status == "**Error:** internal error (RuntimeError); the details are in the server log" and items == []
    assert "boom" in caplog.text and "Traceback" not in status


def test_bad_block_choices_give_messages(backend, label):
    assert "at least one" in backend.slot_overlays(_photo(), label, None, [])[0]
    status = backend.slot_overlays(_photo(), label, None, [0, 99])[0]  # the one block rule's own words
    assert status.startswith("**Error:** GLMix block 99 does not exist: this model has 4 GLMix blocks"), status
    last = backend.slot_overlays(_photo(), label, None, [-1])[1]  # from the end, as everywhere else
    assert [c for _, c in last] == [c for _, c in backend.slot_overlays(_photo(), label, None, [3])[1]]


def test_input_size_is_clamped_to_the_allowed_range(backend, label):
    status, _ = backend.slot_overlays(_photo(64, 64), label, 10, [0])
    assert f"network input {webapp.INPUT_SIZES[0]}×{webapp.INPUT_SIZES[0]}" in status


def test_soft_maps_gallery_and_slot_detail(backend, label):
    img = _photo()
    text, items = backend.soft_maps(img, label, None, 0)
    result = backend.analysis(img, label, None)
    assert len(items) == result.loaded.num_slots[0] and "Block 0 (stage 1)" in text
    assert all(picture.shape == _shown(img.shape) for picture, _ in items)
    slots = [int(c.split()[1]) for _, c in items]
    from glmix_vis.app.views import slot_areas

    areas = [float(slot_areas(result, 0)[s]) for s in slots]  # the hard map's, as shown
    assert sorted(slots) == list(range(len(items))) and areas == sorted(areas, reverse=True)
    assert all(f"slot {s} · " in c for s, (_, c) in zip(slots, items))
    slot = slots[0]
    info = backend.slot_detail(img, label, None, 0, 0)
    assert f"slot {slot}**" in info and f"{areas[0]:.1%}" in info
    assert backend.slot_detail(img, label, None, 0, 999).startswith("**Error:**")


def test_class_evidence_and_pseudo_masks(backend, label):
    img = _photo()
    text, scores, gallery, mask = backend.class_view(img, label, None, "slot-cam")
    assert set(scores) == set(CLASSES[1:]) and all(0 <= v <= 1 for v in scores.values())
    assert len(gallery) <= 3 and all(g[0].shape == _shown(img.shape) for g in gallery)
    assert bool(gallery) != ("classes the model sees: none" in text)  # evidence only of classes it sees
    base, regions = mask
    assert base.shape == img.shape and all(name in CLASSES[1:] for _, name in regions)
    assert all(m.shape == img.shape[:2] and m.dtype == np.float32 and 0 <= m.min() <= m.max() <= 1
               for m, _ in regions)  # each class region at its display opacity
    crf = backend.crf_mask(img, label, None, "slot-cam")
    assert crf[0].shape == img.shape
    assert backend.class_view(img, label, None, "no-such-method")[0].startswith("**Error:**")
    assert "does not apply" in backend.class_view(img, label, None, "token")[0]  # needs a token-labeling head
    assert backend.crf_mask(img, label, None, "token") is None


def test_model_settings_describe_the_blocks(backend, label):
    s = backend.model_settings(label)
    assert s["input_size"] == 128 and s["has_classifier"] and s["class_names"] == CLASSES
    assert s["evidence_methods"] == ["cam", "eigencam", "gradcam", "gradcam++", "layercam", "scorecam", "slot-cam",
                                     "xgradcam"] and s["method"] == "slot-cam"
    assert [v for _, v in s["block_choices"]] == list(range(len(s["block_choices"])))
    assert s["blocks"] == resolve_blocks(len(s["block_choices"]), None, default="spread")  # the one spread rule


def test_model_without_a_classifier_head(tmp_path):
    path = tmp_path / "headless.safetensors"
    save_safetensors(create_model("glnet_nano", num_classes=0).state_dict(), path,
                     meta={"model": "glnet_nano", "input_size": [128, 128]})
    app = SlotApp(path, max_side=256, device="cpu")
    s = app.model_settings(path.name)
    assert not s["has_classifier"] and s["evidence_methods"] == []
    img = _photo()
    assert app.slot_overlays(img, path.name, None, [0])[1]
    assert "no classifier head" in app.class_view(img, path.name, None, "slot-cam")[0]
    assert "no classifier head" in app.figure(img, path.name, None, [0], 0, "slot-cam", "classes", "png")[1]


def test_figure_of_the_current_view(backend, label):
    img = _photo()
    for view, fmt, magic in (("slots", "PNG", b"\x89PNG"), ("soft", "PDF", b"%PDF")):
        path, text = backend.figure(img, label, None, [0, 1], 1, "slot-cam", view, fmt)
        assert path and Path(path).read_bytes()[:4] == magic, text
        assert Path(path).name == ("glmix_slot_groups.png" if view == "slots" else "glmix_soft_maps_block1.pdf")
    path, text = backend.figure(img, label, None, [0], 0, "slot-cam", "slots", "svg")
    assert path is None and "unknown figure format" in text


def test_a_drawn_figure_leaves_no_picture_for_the_cycle_collector(backend, label):
    """The figure's artists sit in reference cycles: left to the server's collector, each download
    held its panels' arrays (MBs) for up to 20 s (the raw RSS of eval/soak_app.py swung with them)."""
    import gc

    img = _photo(120, 160)
    backend.figure(img, label, None, [0, 1], 1, "slot-cam", "slots", "png")  # fonts, caches: not garbage
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for view in ("slots", "soft"):
            assert backend.figure(img, label, None, [0, 1], 1, "slot-cam", view, "png")[0]
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    held = [v.shape for o in garbage if isinstance(o, dict) for v in o.values()
            if isinstance(v, np.ndarray) and v.nbytes > 10_000]
    assert held == [], held


@pytest.mark.slow
def test_figure_of_the_class_view(backend, label):
    path, text = backend.figure(_photo(), label, None, [0], 0, "slot-cam", "classes", "png")
    assert path and Path(path).read_bytes()[:4] == b"\x89PNG", text


# ------------------------------------------------------------------------------ public steps, messages
def test_public_steps_give_what_the_callback_gives(backend, label):
    """The steps eval/bench_app.py times one by one (read, forward, hard maps, colours, pictures)
    add up to the callback's overlays."""
    img = _photo(70, 90)
    _, items = backend.slot_overlays(img, label, None, [0, 2])
    result = backend.forward(backend.read_image(img), label)
    assert result is not backend.analysis(img, label, None)  # not cached: a new forward pass
    assert [r.shape for r in (result.hard(0), result.hard(2))] == [_shown(img.shape)[:2]] * 2
    assert len(backend.slot_colors(result, [0, 2])) == 2
    pictures = backend.overlay_pictures(result, [0, 2])
    assert [c for _, c in pictures] == [c for _, c in items]
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(pictures, items))


def test_error_messages_go_to_notify_once(nano_checkpoint, label):
    seen: list[str] = []
    app = SlotApp(nano_checkpoint, max_side=256, device="cpu", notify=seen.append)
    status, _ = app.slot_overlays(_photo(), label, None, [])
    assert status == "**Error:** choose at least one GLMix block" and seen == ["choose at least one GLMix block"]
    app.soft_maps(_photo(), label, None, 99, warn=False)  # an earlier step has warned already
    assert len(seen) == 1
    assert SlotApp(nano_checkpoint, device="cpu").notify is None  # without the page: no pop-ups


# ------------------------------------------------------------------------------ what the model knows
@pytest.fixture(scope="module")
def demo_app(tmp_path_factory):
    pytest.importorskip("gradio")
    from glmix_vis.app import SlotApp
    from glmix_vis.assets import default_checkpoint

    try:
        default_checkpoint()
    except FileNotFoundError:
        pytest.skip("the bundled demo model is not installed")
    mp = pytest.MonkeyPatch()
    mp.setenv("GLMIX_CHECKPOINT_DIR", str(tmp_path_factory.mktemp("empty_dir")))
    try:
        app = SlotApp(device="cpu", max_side=256)
    finally:
        mp.undo()
    assert app.default_label == DEMO_LABEL
    return app


def test_demo_model_says_what_it_knows_and_where_photos_need_another(demo_app):

    names = demo_app.model(DEMO_LABEL).info.foreground_names
    notice = demo_app.model_settings(DEMO_LABEL)["notice"]
    assert "Demo model" in notice and "generated scenes" in notice
    assert f"{len(names)} shapes: {', '.join(names)}" in notice
    assert "official" in notice and "--checkpoint" in notice
    photo = str(Path(__import__("skimage.data").data.__file__).parent / "chelsea.png")
    status, scores, _, _ = demo_app.class_view(photo, DEMO_LABEL, None, "slot-cam")
    assert status.startswith("⚠️ **The demo model knows only") and "mean nothing" in status
    assert "official checkpoint" in status and set(scores) == set(names)


def test_other_models_list_their_classes_without_the_demo_warning(backend, nano_checkpoint):
    label = nano_checkpoint.name
    notice = backend.model_settings(label)["notice"]
    assert notice == (f"**{label}** (glnet_nano) knows 3 classes: disk, square, star.\n\n"
                      f"Checkpoint: `{nano_checkpoint.resolve()}`")
    status = backend.class_view(_photo(), label, None, "slot-cam")[0]
    assert "demo" not in status.lower() and status.startswith("Evidence method")


def test_model_without_a_head_says_slot_maps_only(tmp_path):
    pytest.importorskip("gradio")
    from glmix_vis.app import SlotApp
    from glmix_vis.models.checkpoints import save_safetensors
    from glmix_vis.models.factory import create_model

    path = tmp_path / "headless.safetensors"
    save_safetensors(create_model("glnet_nano", num_classes=0).state_dict(), path,
                     meta={"model": "glnet_nano", "input_size": [128, 128]})
    assert "slot maps only" in SlotApp(path, device="cpu").model_notice(path.name)


def test_class_figure_uses_the_chosen_evidence_method(backend, nano_checkpoint, monkeypatch):
    import glmix_vis.figures as figures

    made = []
    real = figures.save_figure

    def keep(fig, path, *args, **kwargs):  # the layouts' titles, read before the app empties the figure
        made.append([t.get_text() for ax in fig.axes for t in ax.texts if t.get_text()])
        return real(fig, path, *args, **kwargs)

    monkeypatch.setattr(figures, "save_figure", keep)
    label = nano_checkpoint.name
    for method in ("cam", "slot-cam"):
        path, text = backend.figure(_photo(), label, None, [0], 0, method, "classes", "png")
        assert path and Path(path).name == f"glmix_classes_{method}.png", text
        titles = made[-1]
        evidence = [t for t in titles if "evidence" in t]
        masks = [t for t in titles if "mask" in t or "CRF" in t]
        assert all(t.startswith(f"{method} evidence\n") for t in evidence), titles
        assert bool(evidence) != any("no class seen" in t for t in titles), titles
        assert len(masks) == 2 and all(t.endswith(f"\n({method})") for t in masks), titles
    path, text = backend.figure(_photo(), label, None, [0], 0, "token", "classes", "png")
    assert path is None and "does not apply" in text


def test_the_model_notice_names_the_file_it_loaded_absolute(nano_checkpoint, tmp_path, monkeypatch):
    """Issue 24: the app never said which file it loaded (a ``.pth`` and a ``.safetensors`` side by side)."""
    import shutil

    folder = tmp_path / "here"
    folder.mkdir()
    shutil.copy(nano_checkpoint, folder / "mine.safetensors")
    monkeypatch.chdir(folder)
    app = SlotApp("mine.safetensors", max_side=128, device="cpu")  # given relative: shown absolute
    notice = app.model_notice("mine.safetensors")
    assert notice.endswith(f"Checkpoint: `{(folder / 'mine.safetensors').resolve()}`"), notice
    assert app.model_settings("mine.safetensors")["notice"] == notice
    shutil.copy(nano_checkpoint, folder / "mine.pth")  # a name standing for two files: the one served named
    assert SlotApp("mine", max_side=128, device="cpu").model_notice("mine.safetensors") == notice


def test_figures_are_drawn_on_one_long_lived_thread(backend, nano_checkpoint, monkeypatch):
    """Issue 25 item 3: matplotlib caches fonts per thread (up to 64); figures drawn on gradio's short-lived
    worker threads kept 64 threads' worth of fonts alive. Downloads asked from five new threads are drawn
    on one thread, and the font cache does not grow with the asking threads."""
    import threading

    from matplotlib import font_manager

    import glmix_vis.figures as figures

    drawn_on, real = [], figures.save_figure

    def record(fig, path, *args, **kwargs):
        drawn_on.append(threading.get_ident())
        return real(fig, path, *args, **kwargs)

    monkeypatch.setattr(figures, "save_figure", record)
    label, answers = nano_checkpoint.name, []

    def ask():
        answers.append(backend.figure(_photo(), label, None, [0], 0, "slot-cam", "slots", "png"))

    sizes = []
    for _ in range(5):  # one new thread per request, as gradio's idle workers come and go
        thread = threading.Thread(target=ask)
        thread.start()
        thread.join()
        sizes.append(font_manager._get_font.cache_info().currsize)
    assert all(path for path, _ in answers), answers
    assert len(set(drawn_on)) == 1 and drawn_on[0] != threading.get_ident()
    assert sizes[-1] == sizes[0], sizes  # before: one more set of fonts per asking thread
