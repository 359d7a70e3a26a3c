"""The soft-map tab with 64 slots (issue 24, item 6): each peak against the uniform weight 1/S,
the slots that own no pixel marked and shown last, and a page that stays navigable (the 16
largest first, with a count; every owning slot or all on request)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import gradient_photo as _photo  # the same test photo in every app test

gr = pytest.importorskip("gradio")

from glmix_vis.app import MAX_SOFT_MAPS, ModelCache, SlotApp, messages, views  # noqa: E402

pytestmark = pytest.mark.usefixtures("checkpoint_dir")  # never the user's real checkpoint folder


@pytest.fixture(scope="module")
def app64(nano_checkpoint):
    """The app on a random glnet_nano with 64 slots per block (as the official variants have)."""
    from glmix_vis.data.labels import LabelSpace
    from glmix_vis.loading import ModelInfo
    from glmix_vis.models.factory import create_model

    def load(path, device="cpu", **_):
        torch.manual_seed(3)
        model = create_model("glnet_nano", num_classes=3, num_slots=64).eval()
        info = ModelInfo(name="glnet_nano", labels=LabelSpace(("background", "disk", "square", "star")),
                         input_size=128, checkpoint=str(path))
        return model, info

    mp = pytest.MonkeyPatch()
    mp.setenv("GLMIX_CHECKPOINT_DIR", str(nano_checkpoint.parent / "none"))
    try:
        app = SlotApp(nano_checkpoint, max_side=256, device="cpu")
    finally:
        mp.undo()
    app.models = ModelCache(device="cpu", loader=load)
    return app, nano_checkpoint.name


def _slot(caption: str) -> int:
    return int(caption.split()[1])


def test_64_slots_show_the_16_largest_first_with_a_count(app64):
    app, label = app64
    block = len(app.model(label).block_names) - 1  # the last block: a 4×4 grid, so most slots own no pixel
    text, items = app.soft_maps(_photo(), label, None, block)
    result = app.analysis(_photo(), label, None)
    areas = views.slot_areas(result, block)
    owning = int((areas > 0).sum())
    assert 0 < owning < 64 and len(items) == MAX_SOFT_MAPS == 16
    assert "16 of its 64 slots" in text and f"{owning} own pixels" in text and f"{64 - owning} own none" in text
    assert "1/64 = 0.016" in text  # the uniform weight, against which every peak is read
    shown = [_slot(c) for _, c in items]
    assert [areas[s] for s in shown] == sorted((areas[s] for s in shown), reverse=True)
    assert shown == views.slot_order(result, block)[:16]


def test_every_caption_reads_its_peak_against_the_uniform_weight(app64):
    app, label = app64
    block = len(app.model(label).block_names) - 1
    _, items = app.soft_maps(_photo(), label, None, block, shown="all")
    result = app.analysis(_photo(), label, None)
    areas, peaks = views.slot_areas(result, block), views.slot_peaks(result, block)
    assert len(items) == 64 and sorted(_slot(c) for _, c in items) == list(range(64))
    seen_none = False
    for _, caption in items:
        s = _slot(caption)
        assert f"peak {peaks[s]:.2f} = {messages.uniform_multiple(peaks[s], 64)} uniform" in caption, caption
        assert ("owns no pixel" in caption) is bool(areas[s] == 0), caption
        seen_none = seen_none or areas[s] == 0
        assert not (seen_none and areas[s] > 0), "a slot that owns pixels after one that owns none"
    assert seen_none
    assert messages.uniform_multiple(1 / 64, 64) == "1.0×" and messages.uniform_multiple(0.9, 64) == "58×"


def test_owning_slots_only_and_what_a_click_says(app64):
    app, label = app64
    block = len(app.model(label).block_names) - 1
    result = app.analysis(_photo(), label, None)
    areas = views.slot_areas(result, block)
    _, items = app.soft_maps(_photo(), label, None, block, shown="owning")
    assert sorted(_slot(c) for _, c in items) == sorted(int(s) for s in np.flatnonzero(areas))
    last = app.slot_detail(_photo(), label, None, block, 63)  # the last slot in the order owns nothing
    assert "owns **no pixel**" in last and "the uniform weight 1/64" in last
    first = app.slot_detail(_photo(), label, None, block, 0)
    assert f"owns **{areas.max():.1%}**" in first
    assert "unknown choice of slots" in app.soft_maps(_photo(), label, None, block, shown="some")[0]


def test_the_soft_tab_offers_the_choice_of_slots(backend):
    from glmix_vis.app import build_app

    try:
        demo = build_app(backend=backend)
    finally:
        backend.notify = None
    soft = demo.page_parts.tabs["soft"]
    which = soft.outputs["which"]
    assert which.value == "largest" and [v for _, v in which.choices] == ["largest", "owning", "all"]
    assert which in soft.refresh[0].inputs
