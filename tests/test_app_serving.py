"""What the app may serve and how (:mod:`glmix_vis.app.serving`): the model dropdown, gallery
files, glibc heap settings and gradio's per-visitor queues."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import gradient_photo as _photo  # the same test photo in every app test
from PIL import Image

gr = pytest.importorskip("gradio")

from glmix_vis import app as webapp  # noqa: E402
from glmix_vis.app import DEMO_LABEL, discover_checkpoints  # noqa: E402

pytestmark = pytest.mark.usefixtures("checkpoint_dir")  # never the user's real checkpoint folder


def test_dropdown_lists_only_checkpoint_files_in_the_checkpoint_dir(checkpoint_dir, nano_checkpoint):
    folder = checkpoint_dir
    for name in ("a.safetensors", "b.pth", "notes.txt", "c.ckpt"):
        (folder / name).write_bytes(b"x")
    (folder / "sub").mkdir()
    (folder / "sub" / "d.pth").write_bytes(b"x")
    (folder / "dir.pth").mkdir()
    found = discover_checkpoints()
    files = {k: v for k, v in found.items() if k != DEMO_LABEL}
    assert sorted(files) == ["a.safetensors", "b.pth"]
    assert all(p.parent == folder for p in files.values())
    with_operator = discover_checkpoints(nano_checkpoint)
    assert next(iter(with_operator)) == nano_checkpoint.name  # the operator's choice comes first
    if DEMO_LABEL in found:  # naming the bundled model is not a second entry
        assert list(discover_checkpoints(found[DEMO_LABEL]))[0] == DEMO_LABEL
        assert list(discover_checkpoints(found[DEMO_LABEL]).values()).count(found[DEMO_LABEL]) == 1


def test_gallery_pictures_are_finished_files_named_by_content(tmp_path):
    files = webapp.PictureFiles(max_age_s=60)
    a, b = _photo(), _photo()[::-1].copy()
    pa, pb = files.save(a), files.save(b)
    assert files.save(a.copy()) == pa and pa != pb
    with Image.open(pa) as im:
        assert im.format == "JPEG" and im.size == (a.shape[1], a.shape[0])
    os.utime(pa, (0, 0))  # unused for a long time
    files.prune()
    assert not Path(pa).exists() and Path(pb).exists()
    assert files.gallery([(a, "x")]) == [(pa, "x")]  # written again when needed


def test_heap_fragmentation_limit_respects_the_operator(monkeypatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert webapp.limit_heap_fragmentation() is False  # the operator's setting is left alone
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    applied = webapp.limit_heap_fragmentation()
    assert applied is (sys.platform.startswith("linux") and _is_glibc())


def _is_glibc() -> bool:
    import platform

    return platform.libc_ver()[0] == "glibc"


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
