"""gradio's cache of visitors' files, bounded in number and size (issue 25, item 3): the oldest go
first, their names are forgotten, the examples stay, and a page that asks for a deleted upload is
told to upload it again."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import gradient_photo
from PIL import Image

from glmix_vis.app.file_cache import VisitorFileCache


class _Blocks(SimpleNamespace):
    """What the cache reads of a ``gradio.Blocks``: its sets of cached names and its components."""


def _cached(root: Path, n: int, size: int = 1000) -> list[str]:
    """``n`` files in gradio's layout (a folder per file), written in order (increasing ctime)."""
    names = []
    for i in range(n):
        folder = root / f"{i:040x}"
        folder.mkdir(parents=True)
        path = folder / f"f{i}.png"
        path.write_bytes(b"x" * size)
        os.utime(path, ns=(time.time_ns(), time.time_ns()))  # ctime increases with every write
        names.append(str(path))
        time.sleep(0.002)
    return names


def test_the_oldest_files_go_first_with_their_names_and_folders(tmp_path):
    names = _cached(tmp_path, 6)
    uploads, outputs = set(names[::2]), set(names[1::2])  # two sets, as gradio keeps uploads and outputs apart
    demo = _Blocks(temp_file_sets=[uploads, outputs], blocks={})
    cache = VisitorFileCache(demo, max_files=4)
    assert cache.sweep() == 2
    assert [Path(n).exists() for n in names] == [False, False, True, True, True, True]
    assert not Path(names[0]).parent.exists(), "the empty hash folder is removed too"
    assert uploads | outputs == set(names[2:]) and cache.deleted == 2
    assert cache.sweep() == 0  # within the bound now


def test_the_size_bound_and_the_names_of_missing_files(tmp_path):
    names = _cached(tmp_path, 5, size=300 * 1024)  # 1.5 MB in all
    gone = names[4] + ".vanished"
    files = set(names) | {gone}
    demo = _Blocks(temp_file_sets=[files], blocks={})
    assert VisitorFileCache(demo, max_files=100, max_mb=1.0).sweep() == 2  # 5 x 300 KB -> 3 x 300 KB <= 1 MB
    assert files == set(names[2:]), "the name of a file already gone is forgotten (gradio keeps it forever)"


def test_files_components_keep_are_neither_deleted_nor_counted(tmp_path):
    names = _cached(tmp_path, 4)
    example = SimpleNamespace(keep_in_cache={names[0]})
    demo = _Blocks(temp_file_sets=[set(names)], blocks={1: example, 2: object()})
    assert VisitorFileCache(demo, max_files=2).sweep() == 1
    assert Path(names[0]).exists() and not Path(names[1]).exists()


def test_bad_bounds_are_refused_and_a_gone_demo_stops_the_sweeps(tmp_path):
    demo = _Blocks(temp_file_sets=[], blocks={})
    with pytest.raises(ValueError, match="max_files"):
        VisitorFileCache(demo, max_files=-1)
    with pytest.raises(ValueError, match="interval_s"):
        VisitorFileCache(demo, interval_s=0)
    cache = VisitorFileCache(demo, interval_s=0.01).start()
    del demo
    cache._thread.join(timeout=5)
    assert not cache._thread.is_alive() and cache.sweep() == 0


# ------------------------------------------------------------------------------ the served page
def test_the_launched_app_bounds_its_cache_and_gradios_request_records(nano_checkpoint, checkpoint_dir):
    pytest.importorskip("gradio")
    from glmix_vis.app import launch
    from glmix_vis.app.settings import CACHE_MAX_FILES, CACHE_MAX_MB, QUEUE_EVENT_RECORDS

    demo = launch(nano_checkpoint, port=None, device="cpu", prevent_thread_lock=True, quiet=True)
    try:
        cache = demo.visitor_files
        assert (cache.max_files, cache.max_bytes) == (CACHE_MAX_FILES, CACHE_MAX_MB * 2 ** 20)
        assert cache._thread.is_alive() and demo.upload_file_set in demo.temp_file_sets
        assert demo._queue.ANALYTICS_MAX_EVENTS == QUEUE_EVENT_RECORDS < 10_000  # gradio's own: 10,000
    finally:
        demo.close()
        demo.visitor_files.stop()


def test_a_page_asking_for_a_deleted_upload_is_told_to_upload_again(backend, tmp_path):
    gr = pytest.importorskip("gradio")
    from gradio.state_holder import SessionState

    from glmix_vis.app import build_app, messages

    demo = build_app(backend=backend)
    analyze = next(f for f in demo.fns.values() if f.api_name == "analyze")
    photo = tmp_path / "0123abcd" / "photo.png"
    photo.parent.mkdir()
    Image.fromarray(gradient_photo(60, 90)).save(photo)
    demo.upload_file_set.add(str(photo))
    sent = {"path": str(photo), "meta": {"_type": "gradio.FileData"}, "orig_name": "photo.png"}
    label = next(iter(backend.checkpoints))

    async def analyze_again() -> dict:
        return await demo.process_api(block_fn=analyze, inputs=[sent, label, 128, [0], 0], state=SessionState(demo))

    first = asyncio.run(analyze_again())
    assert "network input" in first["data"][0]
    assert VisitorFileCache(demo, max_files=0).sweep() >= 1 and not photo.exists()  # the upload, its pictures
    with pytest.raises(gr.Error, match="upload it again") as err:
        asyncio.run(analyze_again())
    assert err.value.message == messages.UPLOAD_GONE
    assert str(photo) not in demo.upload_file_set
