"""What a visitor meets after an upload (issue 24, item 6): one analysis per upload, a bad upload
that keeps the last good result and says why right under the image, progress on every tab's
pictures at once, and sizes written width×height with the downscale named."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import gradient_photo as _photo  # the same test photo in every app test

gr = pytest.importorskip("gradio")

from glmix_vis.app import TAB_CLASSES, TAB_SLOTS, TAB_SOFT, SlotApp, messages  # noqa: E402

pytestmark = pytest.mark.usefixtures("checkpoint_dir")  # never the user's real checkpoint folder


@pytest.fixture(scope="module")
def page(backend):
    from glmix_vis.app import build_app

    try:
        demo = build_app(backend=backend)
    finally:
        backend.notify = None  # no request to pop messages up in
    return demo, demo.page_parts


def _deps(demo, fn):
    return [d for d in demo.fns.values() if d.fn is fn]


def _skipped(value) -> bool:
    """A ``gr.skip()``: the widget keeps what it shows."""
    return isinstance(value, dict) and value.get("__type__") == "update" and "value" not in value


# ------------------------------------------------------------------------------ one run per upload
def test_a_new_image_is_analysed_once_per_upload(page):
    """gradio's image fires ``change`` twice for every upload after the first (two identical
    warnings): the analysis follows the upload, an example and the clear button, never ``change``."""
    demo, parts = page
    image = parts.controls.image
    events = sorted(event for d in _deps(demo, parts.analysis.fn) for block, event in d.targets if block == image._id)
    assert events == ["clear", "upload"], events
    # an example is an analysis too: right after gradio has put it into the image
    load = parts.controls.examples.load_input_event
    assert any(d.trigger_after == load["id"] for d in _deps(demo, parts.analysis.fn))


def test_progress_shows_on_every_tabs_pictures_from_the_start(page):
    """The open tab must not show the previous image's results beside the new one with no sign
    that they are old: from the first moment of an analysis every tab's pictures show progress."""
    demo, parts = page
    views = parts.tabs
    must = [views[TAB_SLOTS].outputs["overlays"], views[TAB_SOFT].outputs["soft"],
            *(views[TAB_CLASSES].outputs[k] for k in ("evidence", "mask", "mask_crf", "scores"))]
    analyses = _deps(demo, parts.analysis.fn)
    assert analyses
    for dep in analyses:
        shown = {w._id for w in dep.show_progress_on or ()}
        assert {w._id for w in must} <= shown, dep.targets
    follow_ups = [d for d in demo.fns.values() if d.trigger_after in {a._id for a in analyses}]
    assert follow_ups and all(d.show_progress != "hidden" for d in follow_ups)


# ------------------------------------------------------------------------------ a bad upload
def test_status_sits_right_under_the_image(page):
    """Where the visitor looks after an upload: the size, or why it was refused (not below the fold)."""
    demo, parts = page
    c = parts.controls

    def siblings(node):
        for child in node.get("children", []):
            yield child
            yield from siblings(child)

    column = next(n for n in siblings(demo.config["layout"])
                  if any(ch["id"] == c.image._id for ch in n.get("children", [])))
    ids = [ch["id"] for ch in column["children"]]
    assert ids[ids.index(c.image._id) + 1] == c.status._id


def test_a_bad_upload_keeps_the_last_good_result(page, nano_checkpoint, tmp_path):
    _, parts = page
    c, label = parts.controls, nano_checkpoint.name
    overlays = parts.tabs[TAB_SLOTS].outputs["overlays"]
    good = parts.analysis.fn(_photo(), label, None, [0, 1], 1)
    assert len(good[overlays]) == 2
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = parts.analysis.fn(str(broken), label, None, [0, 1], 1)
    assert out[c.status].startswith("**Error:** broken.png") and messages.KEPT_PREVIOUS in out[c.status]
    layer = parts.tabs[TAB_SOFT].outputs["layer"]
    assert out[layer] == 1  # the soft-map block as it was (a plain value: see _analysis_step)
    assert all(_skipped(v) for w, v in out.items() if w not in (c.status, layer)), out
    # every tab's views after it leave their widgets as they were, open or not
    for step in parts.follow_ups:
        for current in (TAB_SLOTS, TAB_SOFT, TAB_CLASSES):
            values = {c.image: str(broken), c.model: label, c.size: None, c.view: current}
            args = [values.get(w, getattr(w, "value", None)) for w in step.inputs]
            assert all(_skipped(v) for v in step.fn(*args).values()), step
    # a good image afterwards is analysed as usual
    assert len(parts.analysis.fn(_photo(64, 96), label, None, [0], 0)[overlays]) == 1


def test_an_unreadable_upload_is_read_once(backend, nano_checkpoint, tmp_path, monkeypatch):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    assert "Error" in backend.slot_overlays(str(broken), nano_checkpoint.name, None, [0])[0]
    assert backend.unreadable(str(broken)) and not backend.unreadable(None)
    calls = []
    monkeypatch.setattr(backend, "_read", lambda image: calls.append(image))
    assert "broken.jpg" in backend.soft_maps(str(broken), nano_checkpoint.name, None, 0, warn=False)[0]
    assert calls == []


# ------------------------------------------------------------------------------ sizes
def test_sizes_read_width_by_height_and_name_the_downscale(backend, nano_checkpoint):
    """6000×4000 used to read ``683x1024 px``: every size is width×height, and a shrunk upload says so."""
    label = nano_checkpoint.name
    wide = _photo(400, 600)  # 600 wide, 400 high; the backend's max_side is 256
    status, _ = backend.slot_overlays(wide, label, 128, [0])
    assert status.startswith("256×171 px image (width×height, downscaled from 600×400)"), status
    assert "network input 192×128" in status, status  # 128 px on the short side, the height
    status, _ = backend.slot_overlays(_photo(100, 60), label, 128, [0])
    assert status.startswith("60×100 px image (width×height)") and "downscaled" not in status, status
    assert "network input 128×" in status, status


def test_uploaded_size_is_kept_with_the_analysis(nano_checkpoint):
    app = SlotApp(nano_checkpoint, max_side=64, device="cpu")
    result = app.analysis(_photo(90, 120), nano_checkpoint.name, 96)
    assert result.uploaded_size == (120, 90) and result.predictor.image.shape[:2] == (48, 64)
    assert np.asarray(app.read_image(_photo(90, 120))).shape == (48, 64, 3)
