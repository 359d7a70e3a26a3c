"""What a newcomer meets in the web app (issue 14): one-line start-up errors, a plain word on what
the loaded model knows, one soft-map scale in the app and the figure, figures that follow the
chosen view and method, masks that stay visible over photos, and one name per block."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import gradient_photo as _photo  # noqa: E402  the same test photo in every app test
from scipy.ndimage import maximum_filter
from skimage.segmentation import find_boundaries

from glmix_vis.data.palette import voc_palette
from glmix_vis.figures import render
from glmix_vis.models.slots import SlotMap, block_label

CLASSES = ["background", "disk", "square", "star"]  # the classes of the nano_checkpoint fixture (conftest.py)
pytestmark = pytest.mark.usefixtures("checkpoint_dir")  # never the user's real checkpoint folder
GREY = 7  # VOC colour (128, 128, 128): the demo model's 'horse'


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory):
    pytest.importorskip("gradio")
    from glmix_vis.app import DEMO_LABEL, SlotApp
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


def _listening_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _page(app):
    """The page on ``app``, leaving ``app`` without gradio's pop-ups (no request to show them in)."""
    from glmix_vis.app import build_app

    try:
        return build_app(backend=app)
    finally:
        app.notify = None


# ------------------------------------------------------------------------------ start-up errors
def test_address_problem_names_the_port_and_the_option():
    from glmix_vis.app.serving import address_problem

    with _listening_port() as sock:
        port = sock.getsockname()[1]
        assert address_problem("127.0.0.1", port) == f"port {port} is in use; choose another with --port"
    assert address_problem("127.0.0.1", _free_port()) is None
    assert "--host" in address_problem("no-such-host.invalid", 7860)


def test_app_on_a_port_in_use_is_one_line_and_exit_2(capsys):
    from glmix_vis.cli.vis import main

    with _listening_port() as sock:
        port = sock.getsockname()[1]
        assert main(["app", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == f"glmix-vis app: error: port {port} is in use; choose another with --port\n"


def test_app_on_an_unusable_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    pytest.importorskip("gradio")
    from glmix_vis.cli.vis import main

    bad = tmp_path / "random.pth"
    bad.write_text("not a checkpoint\n")
    assert main(["app", "--checkpoint", str(bad), "--port", str(_free_port()), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err == ("glmix-vis app: error: random.pth is a text file, not a checkpoint "
                   "(starts with b'not a checkpoint')\n"), err
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(bytes(range(200, 256)) * 4)
    assert main(["app", "--checkpoint", str(garbage), "--port", str(_free_port()), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("glmix-vis app: error: garbage.pth is not a checkpoint") and err.count("\n") == 1, err


def test_port_taken_after_the_check_is_still_one_line(nano_checkpoint, monkeypatch):
    """gradio's own "Cannot find empty port ... GRADIO_SERVER_PORT" becomes the --port message."""
    pytest.importorskip("gradio")
    from glmix_vis.app import ServeError, page, serving

    calls = []

    def first_free_then_real(host, port):
        calls.append(port)
        return None if len(calls) == 1 else serving.address_problem(host, port)

    monkeypatch.setattr(page, "address_problem", first_free_then_real)
    with _listening_port() as sock:
        port = sock.getsockname()[1]
        with pytest.raises(ServeError) as info:
            page.launch(nano_checkpoint, port=port, device="cpu", prevent_thread_lock=True, quiet=True)
    assert str(info.value) == f"port {port} is in use; choose another with --port"
    assert "GRADIO" not in str(info.value) and len(calls) == 2


# ------------------------------------------------------------------------------ what the model knows
def test_demo_model_says_what_it_knows_and_where_photos_need_another(demo_app):
    from glmix_vis.app import DEMO_LABEL

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
    assert notice == f"**{label}** (glnet_nano) knows 3 classes: disk, square, star."
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


def test_page_shows_the_notice_and_updates_it_with_the_model(demo_app):
    import gradio as gr

    demo = _page(demo_app)
    note = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "model-notice"]
    assert len(note) == 1 and isinstance(note[0], gr.Markdown) and "Demo model" in note[0].value
    on_model = [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "on_model"]
    assert len(on_model) == 1 and on_model[0].outputs[-1] is note[0]
    assert on_model[0].fn(demo_app.default_label)[-1] == demo_app.model_notice(demo_app.default_label)


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


def _near_top(picture: np.ndarray, shown: np.ndarray, soft: np.ndarray) -> float:
    """How far (max channel difference) the map's brightest pixel is from the colormap's top."""
    y, x = np.unravel_index(int(np.argmax(soft)), soft.shape)
    top = render.heatmap_overlay(shown, np.ones(soft.shape), render.SOFT_CMAP, render.SOFT_ALPHA)
    return float(np.abs(picture[y, x].astype(int) - top[y, x].astype(int)).max())


def test_app_and_exported_figure_colour_a_slot_on_the_same_scale(backend, nano_checkpoint):
    from glmix_vis.figures import soft_slot_maps
    from glmix_vis.io import downscale_to

    label, block = nano_checkpoint.name, 1
    img = _photo()
    text, items = backend.soft_maps(img, label, None, block)
    assert "scaled to its own peak" in text
    result = backend.analysis(img, label, None)
    m = result.predictor.maps([block])[0]
    peaks = m.dispatch[0].flatten(1).amax(1).numpy()
    assert peaks.max() < 0.8  # a scale fixed at 0-1 would leave these maps dark
    shown = downscale_to(result.shown, 512)
    soft = m.upsample(shown.shape[:2])[0].numpy()
    slot = int(items[-1][1].split()[1])  # the smallest slot: dark on a shared scale
    assert items[-1][1].endswith(f"peak {peaks[slot]:.2f}")
    assert _near_top(items[-1][0], shown, soft[slot]) <= 12  # its brightest pixel: the top colour

    fig = soft_slot_maps(result.predictor, blocks=[block], slots=[slot, int(items[0][1].split()[1])], dpi=80)
    panels = [ax for ax in fig.axes if ax.images]
    titles = [t.get_text() for ax in panels for t in ax.texts]
    assert any(f"peak {peaks[slot]:.2f}" in t for t in titles), titles
    picture = np.asarray(panels[1].images[0].get_array())
    small = render.resize_image(result.predictor.image, picture.shape[:2])
    fig_soft = m.upsample(picture.shape[:2])[0, slot].numpy()
    assert _near_top(picture, small, fig_soft) <= 12  # the same slot looks the same in the figure
    bars = [ax.get_ylabel() for ax in fig.axes if not ax.images and ax.get_ylabel()]
    assert len(bars) == 1 and bars[0] in render.SOFT_SCALE_LABELS, bars


def test_soft_maps_tab_shows_what_the_colours_mean(backend):
    demo = _page(backend)
    html = [b.value for b in demo.blocks.values() if "colorbar-legend" in str(getattr(b, "value", ""))]
    assert any('id="soft-legend"' in h and "the slot's peak weight" in h and "linear-gradient" in h for h in html)
    assert any('id="evidence-legend"' in h for h in html)


# ------------------------------------------------------------------------------ figures follow the view
def test_class_figure_uses_the_chosen_evidence_method(backend, nano_checkpoint, monkeypatch):
    import glmix_vis.figures as figures

    made = []
    real = figures.save_figure

    def keep(fig, path, *args, **kwargs):
        made.append(fig)
        return real(fig, path, *args, **kwargs)

    monkeypatch.setattr(figures, "save_figure", keep)
    label = nano_checkpoint.name
    for method in ("cam", "slot-cam"):
        path, text = backend.figure(_photo(), label, None, [0], 0, method, "classes", "png")
        assert path and Path(path).name == f"glmix_classes_{method}.png", text
        titles = [t.get_text() for ax in made[-1].axes for t in ax.texts if t.get_text()]  # the layouts' titles
        evidence = [t for t in titles if "evidence" in t]
        masks = [t for t in titles if "mask" in t or "CRF" in t]
        assert evidence and all(t.startswith(f"{method} evidence\n") for t in evidence), titles
        assert len(masks) == 2 and all(t.endswith(f"\n({method})") for t in masks), titles
    path, text = backend.figure(_photo(), label, None, [0], 0, "token", "classes", "png")
    assert path is None and "does not apply" in text


def test_switching_tab_block_or_method_takes_the_finished_figure_away(backend):
    from glmix_vis.app import TAB_CLASSES, TAB_SLOTS, TAB_SOFT

    demo = _page(backend)
    by_id = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    figure_file, figure_status = by_id["figure-file"], by_id["figure-status"]
    for tab, view in (("tab-slots", TAB_SLOTS), ("tab-soft", TAB_SOFT), ("tab-classes", TAB_CLASSES)):
        select = [f for f in demo.fns.values() if (by_id[tab]._id, "select") in f.targets]
        assert len(select) == 1 and select[0].outputs[1:] == [figure_file, figure_status], tab
        state, file_update, status = select[0].fn()
        assert state == view and file_update["visible"] is False and file_update["value"] is None
        assert status == ""
    for widget in (by_id["block-choice"], by_id["evidence-method"]):
        listeners = [f for f in demo.fns.values() if (widget._id, "input") in f.targets]
        assert any(f.outputs == [figure_file, figure_status] for f in listeners), widget.label


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
    from glmix_vis.app.backend import _annotated

    image = np.full((60, 80, 3), 128, np.uint8)
    mask = np.zeros((60, 80), np.uint8)
    mask[10:30, 10:30] = 1
    mask[35:55, 40:70] = GREY
    names = ["background", "red", "b", "c", "d", "e", "f", "grey"]
    pred = SimpleNamespace(image=image, info=SimpleNamespace(class_names=names))
    base, regions = _annotated(pred, mask)
    assert base.shape == image.shape and not np.array_equal(base, image)
    assert (base != image).any(axis=2)[find_boundaries(mask == GREY, mode="inner")].all()  # outlined
    opacity = {name: float(m.max()) for m, name in regions}
    assert set(opacity) == {"red", "grey"} and opacity["grey"] > opacity["red"] > 0


# ------------------------------------------------------------------------------ one name per block
def test_block_label_is_the_one_block_name():
    m = SlotMap(stage=2, block=2, grid=(2, 2), logits=torch.zeros(1, 4, 4), slots=torch.zeros(1, 4, 8),
                input_size=(64, 64))
    assert block_label(3, m) == "block 3 (stage 3)"


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
    assert "stages." not in everything  # the module path is for code, not for readers
