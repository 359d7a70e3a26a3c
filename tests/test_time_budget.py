"""Costly evidence methods stop when their caller's time is up or the caller is gone (issue 24, item 2):
a cooperative budget checked between classes and between Score-CAM's batches of masked copies, the
web app's per-request budget, and a visitor's new request cancelling the one still running."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import glmix_vis.models  # noqa: F401  (registers the GLNet family in timm)
from glmix_vis.wsss.evidence import get_evidence_method
from glmix_vis.wsss.evidence.budget import OutOfTime, TimeBudget, check_budget, time_budget

SIZE = (64, 80)


class CountingBudget(TimeBudget):
    """A budget that runs out at its ``limit``-th check (counts them all)."""

    def __init__(self, limit: int | None = None) -> None:
        super().__init__(None)
        self.limit, self.checks = limit, 0

    def check(self) -> None:
        self.checks += 1
        if self.limit is not None and self.checks >= self.limit:
            raise OutOfTime("spent", cancelled=False)


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return glmix_vis.create_model("glnet_nano", num_classes=2).eval()


def test_outside_a_budget_nothing_stops_and_a_spent_or_cancelled_one_raises():
    check_budget()  # eval and the CLI: no budget, no check
    budget = TimeBudget(0.0)
    with time_budget(budget), pytest.raises(OutOfTime, match="time budget of 0 s") as info:
        check_budget()
    assert not info.value.cancelled
    budget = TimeBudget(None)
    budget.cancel()
    with time_budget(budget), pytest.raises(OutOfTime) as info:
        check_budget()
    assert info.value.cancelled
    check_budget()  # the block is over


def test_score_cam_checks_the_budget_before_every_batch_and_stops_within_one(nano):
    images = torch.randn(1, 3, *SIZE)
    method = get_evidence_method("scorecam", target_layers="stages.0", batch_size=8)  # 32 channels: 4 batches
    counting = CountingBudget()
    with time_budget(counting), torch.no_grad():
        method(nano, images, classes=[0, 1])
    assert counting.checks >= 2 * (1 + 4)  # per class, and per batch of masked copies
    stopping = CountingBudget(limit=3)
    with time_budget(stopping), torch.no_grad(), pytest.raises(OutOfTime):
        method(nano, images, classes=[0, 1])
    assert stopping.checks == 3


def test_gradient_methods_check_the_budget_between_classes(nano):
    cancelled = TimeBudget(None)
    cancelled.cancel()
    with time_budget(cancelled), torch.no_grad(), pytest.raises(OutOfTime):
        get_evidence_method("gradcam")(nano, torch.randn(1, 3, *SIZE), classes=[0, 1])


# ------------------------------------------------------------------ the web app
gr = pytest.importorskip("gradio")


def test_the_app_stops_a_request_past_its_budget_with_one_line(nano_checkpoint, checkpoint_dir):
    from glmix_vis.app import SlotApp

    app = SlotApp(nano_checkpoint, max_side=128, device="cpu", time_budget=0.0)
    photo = np.random.default_rng(0).integers(0, 255, (*SIZE, 3), dtype=np.uint8)
    text = app.class_view(photo, nano_checkpoint.name, None, "scorecam")[0]
    assert text.startswith("**Error:**") and "stopped after 0 s" in text and "faster evidence method" in text
    assert app.crf_mask(photo, nano_checkpoint.name, None, "scorecam") is None
    assert app._running == {}  # nothing left registered


def test_a_visitors_new_request_or_leaving_cancels_the_running_one(nano_checkpoint, checkpoint_dir):
    from glmix_vis.app import SlotApp

    app = SlotApp(nano_checkpoint, max_side=128, device="cpu")
    with app.budgeted("visitor") as first:
        with app.budgeted("other") as other, app.budgeted("visitor") as second:
            assert first.cancelled and not second.cancelled and not other.cancelled
            app.cancel("visitor")  # the page closed
            assert second.cancelled and not other.cancelled
    assert app._running == {}
    app.cancel("nobody")  # nothing running: nothing to do
    settings = app.model_settings(nano_checkpoint.name)
    labels = dict((v, k) for k, v in settings["method_choices"])
    assert labels["scorecam"].startswith("scorecam (slow") and labels["slot-cam"] == "slot-cam"
