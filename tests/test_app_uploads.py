"""What a visitor meets after an upload (issue 24, item 6): one analysis per upload, a bad upload
that keeps the last good result and says why right under the image, progress on every tab's
pictures at once, and sizes written width×height with the downscale named."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from helpers import gradient_photo as _photo  # the same test photo in every app test
from PIL import Image

gr = pytest.importorskip("gradio")

from glmix_vis.app import TAB_CLASSES, TAB_SLOTS, TAB_SOFT, SlotApp, messages  # noqa: E402
from glmix_vis.app.page import TABS, Shown  # noqa: E402

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


def _empty(value) -> bool:
    return value is None or (not isinstance(value, np.ndarray) and value in ("", [], {}))


def _seen(out: dict) -> dict:
    """What a view's widgets show, comparable across calls: a gallery's captions (its files are new
    each time), a mask's size and classes, an update's value."""
    def seen(value):
        if isinstance(value, dict) and value.get("__type__") == "update":
            return seen(value.get("value"))
        if isinstance(value, list):
            return [caption for _, caption in value]
        if isinstance(value, tuple):
            base, layers = value
            return base.shape, [name for _, name in layers]
        return value

    return {w: seen(v) for w, v in out.items()}


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


def _file(path, image) -> str:
    """``image`` saved at ``path``: the page hands its callbacks uploads as file paths."""
    Image.fromarray(image).save(path)
    return str(path)


def _broken(tmp_path) -> str:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return str(broken)


def _args(step, values: dict) -> list:
    """The inputs of ``step``: from ``values``, else each widget's own value (a state's initial one)."""
    return [values[w] if w in values else getattr(w, "value", None) for w in step.inputs]


def test_a_bad_upload_keeps_the_last_good_result(page, nano_checkpoint, tmp_path):
    _, parts = page
    c, label = parts.controls, nano_checkpoint.name
    overlays = parts.tabs[TAB_SLOTS].outputs["overlays"]
    photo = _file(tmp_path / "photo.png", _photo())
    good = parts.analysis.fn(photo, label, None, [0, 1], 1, Shown(), 0)
    assert len(good[overlays]) == 2 and good[c.shown] == Shown(photo) and _skipped(good[c.refusals])
    broken = _broken(tmp_path)
    out = parts.analysis.fn(broken, label, None, [0, 1], 1, good[c.shown], 0)
    assert out[c.status].startswith("**Error:** broken.png") and messages.KEPT_PREVIOUS in out[c.status]
    assert out[c.status].count("\n") == 0
    layer = parts.tabs[TAB_SOFT].outputs["layer"]
    assert out[layer] == 1  # the soft-map block as it was (a plain value: see _analysis_step)
    # the pictures still show the photo, and the refusal is counted (its change gives the image back)
    assert out[c.shown] == Shown(photo, refused=True) and out[c.refusals] == 1
    assert all(_skipped(v) for w, v in out.items() if w not in (c.status, layer, c.shown, c.refusals)), out
    # every tab's views after it leave their widgets as they were, open or not
    for step in parts.follow_ups:
        for current in (TAB_SLOTS, TAB_SOFT, TAB_CLASSES):
            values = {c.image: broken, c.model: label, c.size: None, c.view: current, c.shown: out[c.shown]}
            assert all(_skipped(v) for v in step.fn(*_args(step, values)).values()), step
    # a good image afterwards is analysed as usual
    again = parts.analysis.fn(_file(tmp_path / "small.png", _photo(64, 96)), label, None, [0], 0, out[c.shown], 1)
    assert len(again[overlays]) == 1 and again[c.shown] == Shown(str(tmp_path / "small.png"))


def test_the_image_box_gets_back_the_image_the_pictures_show(page, nano_checkpoint, tmp_path):
    """A broken upload used to stay in the image box (the browser's broken-image icon) beside the
    pictures of the image before it: the box gets that image back, a plain value (never an update
    of the image, which gradio would keep as one more component per request), or is emptied."""
    demo, parts = page
    c, label = parts.controls, nano_checkpoint.name
    photo, broken = _file(tmp_path / "photo.png", _photo()), _broken(tmp_path)
    shown = parts.analysis.fn(broken, label, None, [0], 0, Shown(photo), 3)[c.shown]
    give_back = parts.give_back
    assert give_back.inputs == [c.image, c.shown] and give_back.outputs == [c.image]
    assert give_back.fn(broken, shown) == {c.image: photo}
    other = _file(tmp_path / "other.png", _photo(64, 64))
    assert give_back.fn(other, shown) == {c.image: other}  # another image put there since: left as it is
    assert give_back.fn(None, shown) == {c.image: None}
    gone = Shown(str(tmp_path / "deleted_since.png"), refused=True)  # gradio's cache deleted it
    assert give_back.fn(broken, gone) == {c.image: None}
    # wired to the refusals only: a good upload writes nothing to the image
    events = [(demo.blocks[b].__class__.__name__, e) for d in _deps(demo, give_back.fn) for b, e in d.targets]
    assert events == [("State", "change")] and all(d.show_progress == "hidden" for d in _deps(demo, give_back.fn))


def test_a_bad_first_upload_empties_the_box_and_claims_no_kept_pictures(page, nano_checkpoint, tmp_path):
    _, parts = page
    c = parts.controls
    broken = _broken(tmp_path)
    out = parts.analysis.fn(broken, nano_checkpoint.name, None, [0], 0, Shown(), 0)
    assert out[c.status].startswith("**Error:** broken.png") and messages.KEPT_PREVIOUS not in out[c.status]
    assert out[c.shown] == Shown(None, refused=True) and out[c.refusals] == 1
    assert parts.give_back.fn(broken, out[c.shown]) == {c.image: None}


def test_a_tab_opened_after_a_bad_upload_shows_the_last_good_image(page, nano_checkpoint, tmp_path):
    """A tab never opened before showed nothing after a bad upload (its views were skipped): opened,
    it shows the image the other tabs show, or its usual empty state when there is none."""
    _, parts = page
    c, label = parts.controls, nano_checkpoint.name
    photo, broken = _file(tmp_path / "photo.png", _photo()), _broken(tmp_path)
    parts.analysis.fn(photo, label, None, [0, 1], 1, Shown(), 0)
    kept = parts.analysis.fn(broken, label, None, [0, 1], 1, Shown(photo), 0)[c.shown]
    assert list(parts.on_open) == [tab.id for tab in TABS]
    for tab in (TAB_SOFT, TAB_CLASSES):
        for step in parts.on_open[tab]:
            raw = next(r for r in parts.tabs[tab].refresh if r.outputs == step.outputs)
            base = {c.model: label, c.size: None, c.view: tab}
            # the box may still hold the bad upload (the tab opened before the image came back)
            for box in (broken, photo):
                out = step.fn(*_args(step, {**base, c.image: box, c.shown: kept}))
                assert _seen(out) == _seen(raw.fn(*_args(raw, {**base, c.image: photo}))), (tab, box)
                assert not all(_empty(v) for v in _seen(out).values()), (tab, box)
            nothing = step.fn(*_args(step, {**base, c.image: broken, c.shown: Shown(None, refused=True)}))
            assert all(_empty(v) for v in _seen(nothing).values()), tab  # its usual empty state


def test_the_image_given_back_adds_nothing_to_a_visitors_session(page, nano_checkpoint, tmp_path):
    """gradio keeps any update of a component that is also an input (``gr.skip()`` included) as one
    more component in the visitor's session, for good (eval/soak_app.py): good uploads leave the
    session as it was, and a refused one followed by the image given back adds no image and no
    state to it."""
    import asyncio

    from gradio.state_holder import SessionState

    demo, parts = page
    c, label = parts.controls, nano_checkpoint.name
    analysis, give_back = _deps(demo, parts.analysis.fn)[0], _deps(demo, parts.give_back.fn)[0]
    state, sizes, added = SessionState(demo), [], []
    os.makedirs(demo.GRADIO_CACHE, exist_ok=True)

    def upload(path: str) -> dict:  # an upload as the page sends it, from gradio's cache
        return {"path": shutil.copy(path, demo.GRADIO_CACHE), "meta": {"_type": "gradio.FileData"}}

    async def run(dep, inputs: list) -> None:
        before = set(state.blocks_config.blocks)
        await demo.process_api(dep, inputs, state=state)
        added.extend(type(state.blocks_config.blocks[k]).__name__ for k in set(state.blocks_config.blocks) - before)

    async def uploads() -> None:
        for i in range(3):  # good uploads only
            await run(analysis, [upload(_file(tmp_path / f"good_{i}.png", _photo(48 + i, 64))), label, 128, [0], 0,
                                 None, None])
            sizes.append(len(state.blocks_config.blocks))
        for i in range(3):  # a refused upload, the image given back, a good upload
            bad = upload(_broken(tmp_path))
            await run(analysis, [bad, label, 128, [0], 0, None, None])
            await run(give_back, [bad, None])
            await run(analysis, [upload(_file(tmp_path / f"next_{i}.png", _photo(40 + i, 64))), label, 128, [0], 0,
                                 None, None])

    asyncio.run(uploads())
    assert sizes[-1] == sizes[0], sizes
    assert state[c.refusals._id] == 3 and state[c.shown._id] == Shown(state[c.shown._id].image)
    assert not {"UploadImage", "State"} & set(added), added


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
