"""Hostile inputs and bad days (issue 25): each case is refused up front with one clear line, or
handled quietly, instead of a silently wrong result, a traceback or a leftover process/file.

eval/RESULTS.md ("Hostile cases") lists every case here with its outcome before and after.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from helpers import wait_until
from PIL import Image

from glmix_vis.cli.vis import main as vis_main
from glmix_vis.cli.wsss import main as wsss_main
from glmix_vis.data import DatasetError, open_dataset
from glmix_vis.models.checkpoints import CheckpointError, load_checkpoint, read_checkpoint, save_safetensors

REPO = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


@pytest.fixture(scope="module")
def nano_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return timm.create_model("glnet_nano", num_classes=3).state_dict()


# -- 4a / 6: COCO annotation files -----------------------------------------------------------------


def _coco(root: Path, file_names: list[str]) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "val2014").mkdir()
    images = [{"id": k + 1, "file_name": name, "height": 20, "width": 30} for k, name in enumerate(file_names)]
    for info in images:
        path = root / "val2014" / info["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (30, 20), (90, 120, 30)).save(path)
    data = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(data))
    return root


def test_coco_images_sharing_a_stem_are_refused_up_front(tmp_path):
    root = _coco(tmp_path / "coco", ["a.jpg", "b.jpg", "a.png", "sub/b.jpg"])
    with pytest.raises(DatasetError) as info:
        open_dataset("coco", root, "val")
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert "instances_val2014.json" in message and "a.jpg" in message and "a.png" in message
    assert "one mask file" in message and "1 more" in message  # b.jpg and sub/b.jpg: counted


def test_coco_annotations_without_images_are_refused_up_front(tmp_path):
    root = _coco(tmp_path / "coco", [])
    with pytest.raises(DatasetError, match=r"instances_val2014\.json: no images"):
        open_dataset("coco", root, "val")


# -- 4b: non-finite weights ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_on_load(tmp_path, nano_sd, bad):
    sd = dict(nano_sd)
    key = next(k for k, v in sd.items() if v.is_floating_point() and v.numel() > 8 and k.startswith("stages."))
    sd[key] = sd[key].clone()
    sd[key].view(-1)[3] = bad
    path = tmp_path / "bad.safetensors"
    save_safetensors(sd, path, meta={"model": "glnet_nano"})
    with pytest.raises(CheckpointError, match=rf"bad\.safetensors .*{key} holds 1 non-finite value"):
        load_checkpoint(timm.create_model("glnet_nano", num_classes=3), path)
    with pytest.raises(CheckpointError, match=rf"{key} holds 1 non-finite value"):  # timm's pretrained=True
        timm.create_model("glnet_nano", pretrained=True, num_classes=3, pretrained_cfg_overlay=dict(file=str(path)))
    from glmix_vis.cli.checkpoint_cmd import format_description
    from glmix_vis.models.convert import describe_checkpoint

    info = describe_checkpoint(path)
    assert info["non_finite"] == key
    text = format_description(info)
    assert "exact fit" not in text and f"{key} holds non-finite values" in text


def test_inspect_prints_non_finite_weights(tmp_path, nano_sd, capsys):
    sd = {k: (v.clone().fill_(float("nan")) if k == "head.bias" else v) for k, v in nano_sd.items()}
    path = tmp_path / "nan.pth"
    torch.save({"model": sd}, path)
    assert vis_main(["checkpoint", "inspect", str(path)]) == 0
    assert "head.bias holds non-finite values" in capsys.readouterr().out
    assert vis_main(["checkpoint", "convert", str(path), str(tmp_path / "out.safetensors")]) == 2
    assert "head.bias holds 3 non-finite value(s)" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()


# -- 6 / 7: checkpoint files that are intact, or hostile ------------------------------------------


def test_a_config_holding_empty_bytes_is_not_called_corrupt(tmp_path, nano_sd):
    path = tmp_path / "bytes.pth"
    torch.save({"model": nano_sd, "config": b"", "args": {"note": b""}}, path)
    ckpt = read_checkpoint(path)
    assert set(ckpt.weights) == {"model"}


def _with_metadata(src: Path, dst: Path, key: str, value: str) -> Path:
    """``src`` (a safetensors file) with one more metadata string in its header."""
    raw = src.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header.setdefault("__metadata__", {})[key] = value
    encoded = json.dumps(header).encode()
    dst.write_bytes(len(encoded).to_bytes(8, "little") + encoded + raw[8 + n:])
    return dst


def test_a_deeply_nested_safetensors_header_is_one_line(tmp_path, nano_sd, capsys):
    good = save_safetensors(nano_sd, tmp_path / "good.safetensors", meta={"model": "glnet_nano"})
    deep = _with_metadata(good, tmp_path / "deep.safetensors", "classes", "[" * 200_000 + "]" * 200_000)
    with pytest.raises(CheckpointError, match=r"deep\.safetensors: metadata 'classes' is nested too deeply"):
        read_checkpoint(deep)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        timm.create_model("glnet_nano", pretrained=True, num_classes=3, pretrained_cfg_overlay=dict(file=str(deep)))
    for command in (["checkpoint", "inspect", str(deep)], ["slots", "--checkpoint", str(deep), "--device", "cpu"]):
        assert vis_main(command) == 2
        err = capsys.readouterr().err
        assert "nested too deeply" in err and len(err.strip().splitlines()) == 1


def test_convert_into_a_missing_folder_is_one_line(tmp_path, nano_sd, capsys):
    src = save_safetensors(nano_sd, tmp_path / "src.safetensors", meta={"model": "glnet_nano"})
    assert vis_main(["checkpoint", "convert", str(src), str(tmp_path / "missing" / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "missing" in err and "folder" in err


def test_convert_refuses_an_input_size_below_one(tmp_path, nano_sd, capsys):
    src = save_safetensors(nano_sd, tmp_path / "src.safetensors", meta={"model": "glnet_nano"})
    out = tmp_path / "out.safetensors"
    assert vis_main(["checkpoint", "convert", str(src), str(out), "--input-size", "0"]) == 2
    assert "--input-size" in capsys.readouterr().err and not out.exists()
    from glmix_vis.models.convert import convert_checkpoint

    with pytest.raises(ValueError, match="input_size"):
        convert_checkpoint(src, out, input_size=(224, -3))


def test_a_binary_classes_file_is_named(tmp_path, nano_sd, capsys):
    src = save_safetensors(nano_sd, tmp_path / "src.safetensors", meta={"model": "glnet_nano"})
    classes = tmp_path / "classes.bin"
    classes.write_bytes(b"\xff\xfe\x00\x81binary")
    assert vis_main(["checkpoint", "convert", str(src), str(tmp_path / "o.safetensors"), "--classes",
                     str(classes)]) == 2
    err = capsys.readouterr().err
    assert "classes.bin" in err and len(err.strip().splitlines()) == 1


def test_a_folder_as_pretrained_file_is_called_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match=rf"{tmp_path.name} is a folder, not a checkpoint file"):
        timm.create_model("glnet_nano", pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path)))


def test_an_unavailable_device_is_one_clear_line():
    from glmix_vis.devices import resolve_device

    if not (torch.backends.mps.is_available()):
        with pytest.raises(ValueError, match=r"device 'mps' requested but .* not available on this machine"):
            resolve_device("mps")
    if not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        with pytest.raises(ValueError, match=r"device 'xpu' requested but .* not available on this machine"):
            resolve_device("xpu")


# -- 7: the decompression-bomb message quotes our limit -------------------------------------------


def test_the_bomb_message_quotes_our_limit_not_pillows(tmp_path):
    import struct
    import zlib

    from glmix_vis.io import DEFAULT_MAX_PIXELS, ImageLoadError, load_image

    data = bytearray(Path(_png(tmp_path)).read_bytes())
    ihdr = struct.pack(">II", 40_000, 40_000) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    with pytest.raises(ImageLoadError) as info:
        load_image(bytes(data))
    assert f"limit of {DEFAULT_MAX_PIXELS}" in str(info.value) and "1600000000 pixels" in str(info.value)
    assert str(2 * Image.MAX_IMAGE_PIXELS) not in str(info.value)
    with pytest.raises(ImageLoadError, match="limit of 1000000 "):
        load_image(bytes(data), max_pixels=1_000_000)


def _png(tmp_path: Path) -> Path:
    path = tmp_path / "one.png"
    Image.new("L", (1, 1)).save(path)
    return path


# -- 1 (the bound of the network input) and 6 (the sliver) ----------------------------------------


def test_the_network_input_is_bounded_in_aspect_ratio_and_pixels():
    from glmix_vis.preprocess import MAX_ASPECT_RATIO, MAX_INPUT_PIXELS, model_input_size

    with pytest.raises(ValueError, match=r"1x1024 .* aspect ratio .*at most 1:16|aspect ratio"):
        model_input_size(1, 1024, 224)
    with pytest.raises(ValueError, match="aspect ratio"):
        model_input_size(1024, 1, None)
    assert model_input_size(100, 100 * MAX_ASPECT_RATIO, 64) == (64, 64 * MAX_ASPECT_RATIO)
    with pytest.raises(ValueError, match=r"30000.*pixels.*--input-size"):
        model_input_size(480, 640, 30000)
    with pytest.raises(ValueError, match="pixels"):
        model_input_size(4000, 3000, None)  # an eval at the image's own size
    h, w = model_input_size(2000, 2000, None if 2000 * 2000 <= MAX_INPUT_PIXELS else 1024)
    assert h * w <= MAX_INPUT_PIXELS


def test_a_large_image_is_downscaled_before_it_becomes_float32(monkeypatch):
    import glmix_vis.preprocess as preprocess

    seen = []
    real = preprocess.to_tensor
    monkeypatch.setattr(preprocess, "to_tensor", lambda image: seen.append(image.shape) or real(image))
    big = np.random.default_rng(0).integers(0, 255, (3000, 2400, 3), dtype=np.uint8)
    batch = preprocess.image_to_batch(big, (0.5,) * 3, (0.25,) * 3, short_side=224)
    assert tuple(batch.shape) == (1, 3, 288, 224)
    assert seen and seen[0][0] * seen[0][1] <= preprocess.MAX_INPUT_PIXELS
    small = big[:200, :160]
    seen.clear()
    preprocess.image_to_batch(small, (0.5,) * 3, (0.25,) * 3, short_side=224)
    assert seen == [(200, 160, 3)]  # an ordinary image takes the unchanged path


def _decoded_sizes(monkeypatch) -> list[tuple[int, int]]:
    """The (width, height) of every image file Pillow decodes from now on (after its draft)."""
    from PIL import ImageFile

    seen: list[tuple[int, int]] = []
    real = ImageFile.ImageFile.load

    def load(self):
        result = real(self)
        seen.append(self.size)
        return result

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return seen


def _photo(width: int, height: int) -> np.ndarray:
    """A smooth synthetic photo (gradients and a disc): compresses well, resizes predictably."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y) // 7 % 256], -1).astype(np.uint8)
    rgb[(y - height // 2) ** 2 + (x - width // 3) ** 2 < (height // 4) ** 2] = (200, 30, 30)
    return rgb


def test_a_large_jpeg_is_decoded_reduced_not_at_full_size(tmp_path, monkeypatch):
    from glmix_vis.io import load_image

    path = tmp_path / "big.jpg"
    Image.fromarray(_photo(2400, 1600)).save(path, quality=90)
    seen = _decoded_sizes(monkeypatch)
    small = load_image(path, shrink_to=300 * 200)
    assert small.shape == (200, 300, 3)
    assert seen and max(w * h for w, h in seen) <= 4 * 300 * 200  # DCT scaling: never the 2400x1600 pixels
    reference = np.asarray(Image.open(path).convert("RGB").resize((300, 200), Image.Resampling.BILINEAR))
    assert np.abs(small.astype(int) - reference).mean() < 4  # the same picture
    seen.clear()
    assert load_image(path).shape == (1600, 2400, 3) and set(seen) == {(2400, 1600)}  # no bound: as stored


@pytest.mark.parametrize("mode", ["RGB", "P", "I;16"])
def test_a_large_image_of_any_mode_is_shrunk_to_the_bound(tmp_path, mode):
    from glmix_vis.io import load_image, shrunk_size

    path = tmp_path / "big.png"
    image = Image.fromarray(_photo(1000, 400))
    image = image.convert("L").convert(mode) if mode == "I;16" else image.convert(mode)
    image.save(path)
    out = load_image(path, shrink_to=10_000)
    assert out.shape == (63, 158, 3) and shrunk_size(1000, 400, 10_000) == (158, 63) and out.dtype == np.uint8
    assert load_image(path, shrink_to=1000 * 400).shape == (400, 1000, 3)  # at the bound: untouched


def test_slots_and_figure_work_on_a_large_image_at_the_bounded_size(tmp_path, monkeypatch, capsys):
    import glmix_vis.preprocess as preprocess
    from glmix_vis.figures import render
    from glmix_vis.predictor import SlotPredictor

    monkeypatch.setattr(preprocess, "MAX_INPUT_PIXELS", 256 * 256)
    path = tmp_path / "big.jpg"
    Image.fromarray(_photo(1200, 900)).save(path, quality=90)
    given, drawn = [], []
    real_set, real_overlay = SlotPredictor.set_image, render.SlotOverlay.draw
    monkeypatch.setattr(SlotPredictor, "set_image", lambda self, image, input_size=None:
                        given.append(np.asarray(image).shape) or real_set(self, image, input_size))
    monkeypatch.setattr(render.SlotOverlay, "draw", lambda self, hard, *a, **k:
                        drawn.append(self.image.shape) or real_overlay(self, hard, *a, **k))
    decoded = _decoded_sizes(monkeypatch)
    assert vis_main(["slots", str(path), "--device", "cpu", "--input-size", "64"]) == 0
    assert given == [(221, 295, 3)] and decoded and max(w * h for w, h in decoded) <= 4 * 256 * 256
    given.clear()
    assert vis_main(["figure", str(path), "--out", str(tmp_path / "fig.png"), "--device", "cpu",
                     "--input-size", "64", "--width", "single"]) == 0
    assert given == [(221, 295, 3)] and drawn and all(s[:2] == drawn[0][:2] for s in drawn)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:  # the figure's own raster is bounded too
        vis_main(["figure", str(path), "--dpi", "100000"])
    assert stop.value.code == 2 and "at most 1200 dpi" in capsys.readouterr().err


def test_a_ground_truth_is_shrunk_with_its_large_image(monkeypatch):
    import glmix_vis.preprocess as preprocess
    from glmix_vis.cli.figure_cmd import _truth_for

    monkeypatch.setattr(preprocess, "MAX_INPUT_PIXELS", 256 * 256)
    gt = np.zeros((900, 1200), np.uint8)
    gt[:, 600:] = 255
    shrunk = _truth_for(gt, np.zeros((221, 295, 3), np.uint8))
    assert shrunk.shape == (221, 295) and set(np.unique(shrunk)) == {0, 255}
    wrong = np.zeros((100, 100), np.uint8)
    assert _truth_for(wrong, np.zeros((221, 295, 3), np.uint8)) is wrong  # left for the layout to refuse


def test_the_app_decodes_a_large_upload_reduced(backend, tmp_path, monkeypatch):
    path = tmp_path / "big.jpg"
    Image.fromarray(_photo(2400, 1600)).save(path, quality=90)
    monkeypatch.setattr(backend, "max_side", 150)
    seen = _decoded_sizes(monkeypatch)
    assert backend.read_image(str(path)).shape == (100, 150, 3)
    assert seen and max(w * h for w, h in seen) <= 4 * 300 * 300  # not the 2400x1600 pixels


def test_figure_panels_are_drawn_at_a_bounded_size():
    from glmix_vis.figures.panels import MAX_PANEL_SIDE, pixels

    assert pixels(3.3, 0.75, 300) == (742, 990)  # an ordinary panel: its print resolution
    for width, ratio, dpi in [(6.9, 1.0, 100_000), (1.0, 16.0, 1200), (6.9, 1 / 16, 3000)]:
        h, w = pixels(width, ratio, dpi)
        assert max(h, w) <= MAX_PANEL_SIDE and abs(h / w - ratio) / ratio < 0.05


# -- 3: the served app's memory: closed connections wait for a full garbage collection ------------


def _closed_transports() -> int:
    """Closed asyncio socket transports still in memory, counted without collecting first."""
    import asyncio.selector_events as selector_events

    return sum(1 for o in gc.get_objects()
               if type(o) is selector_events._SelectorSocketTransport and o.is_closing())


def test_closed_connections_are_freed_by_the_servers_collector():
    import urllib.request

    import uvicorn

    from glmix_vis.app import serving
    from glmix_vis.app.serving import CycleCollector

    running = serving._COLLECTOR  # an app launched earlier in this process collects too: not during the test
    if running is not None:
        running.stop()

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off", http="h11"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # only an explicit full collection frees a cycle now, as for CPython's postponed ones
    collector = None
    try:
        thread.start()
        wait_until(lambda: server.started, 30, "the test server")
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"

        def visit(n: int) -> None:
            for _ in range(n):
                request = urllib.request.Request(url, headers={"Connection": "close"})
                with urllib.request.urlopen(request, timeout=10) as answer:
                    assert answer.read() == b"ok"

        base = _closed_transports()
        visit(30)
        wait_until(lambda: _closed_transports() - base >= 25, 10, "closed transports kept")  # in cycles only
        collector = CycleCollector(interval_s=0.2).start()
        visit(30)
        wait_until(lambda: _closed_transports() <= base + 3, 10, "closed transports freed")  # all 60, old and new
        # the transports go inside gc.collect(), the count just after it, on the collector's thread
        wait_until(lambda: collector.collections >= 1, 5, "the collector's count")
    finally:
        if collector is not None:
            collector.stop()
        if running is not None:
            serving._COLLECTOR = CycleCollector(running.interval_s).start()
        if enabled:
            gc.enable()
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def test_the_app_freezes_its_startup_objects_and_collects_the_rest_periodically(monkeypatch):
    from glmix_vis.app import serving

    monkeypatch.setattr(serving, "_COLLECTOR", None)
    frozen = []
    monkeypatch.setattr(serving.gc, "freeze", lambda: frozen.append(True))  # not this test process's objects
    collector = serving.collect_cycles_promptly(interval_s=60)
    try:
        assert frozen == [True] and collector._thread.is_alive() and collector._thread.daemon
        assert serving.collect_cycles_promptly() is collector and frozen == [True]  # once per process
    finally:
        collector.stop()
    with pytest.raises(ValueError, match="positive"):
        serving.CycleCollector(interval_s=0)


def test_the_collector_gives_freed_heap_back_after_each_collection(monkeypatch):
    """The freed chunks scattered through the threads' arenas are released, not kept resident."""
    import sys
    import time

    from glmix_vis.app import serving

    released = []
    monkeypatch.setattr(serving, "release_free_heap", lambda: released.append(True) or True)
    collector = serving.CycleCollector(interval_s=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while len(released) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        collector.stop()
    assert len(released) >= 2 and collector.collections >= 2
    assert 0 < collector.busy_s < 10  # what the collections cost is counted (the soak reports it)
    monkeypatch.undo()
    import platform

    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert serving.release_free_heap() is True


def test_app_names_a_relative_checkpoint_by_its_absolute_path(tmp_path, monkeypatch, capsys):
    pytest.importorskip("gradio")
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "bad.pth").write_text("garbage\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    assert vis_main(["app", "--checkpoint", "rel/bad.pth", "--port", port, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'rel' / 'bad.pth'} is a text file" in err and "Traceback" not in err
    assert vis_main(["app", "--checkpoint", "rel/missing.pth", "--port", port, "--device", "cpu"]) == 2
    assert "no such checkpoint file: rel/missing.pth" in capsys.readouterr().err  # as given: it names no file


def test_operator_message_rewords_only_the_operators_file(tmp_path):
    from glmix_vis.app.serving import operator_message

    path = tmp_path / "m.pth"
    path.write_bytes(b"x")
    assert operator_message("cannot load m.pth: bad", path) == f"cannot load {path.resolve()}: bad"
    assert operator_message("cannot load xm.pth.bak: bad", path) == "cannot load xm.pth.bak: bad"
    assert operator_message("cannot load m.pth: bad", None) == "cannot load m.pth: bad"
    assert operator_message("no such file: gone.pth", tmp_path / "gone.pth") == "no such file: gone.pth"


def test_figure_on_a_sliver_is_one_line(tmp_path, capsys):
    sliver = tmp_path / "sliver.png"
    Image.new("RGB", (1024, 1), (200, 30, 30)).save(sliver)
    assert vis_main(["figure", str(sliver), "--out", str(tmp_path / "fig.png"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "aspect ratio of 1024:1" in errors[0] and "Traceback" not in err
    assert vis_main(["slots", str(sliver), "--device", "cpu", "--input-size", "64"]) == 2
    assert "aspect ratio" in capsys.readouterr().err


def test_the_app_answers_a_sliver_at_once_and_a_normal_image_beside_it(backend, nano_checkpoint):
    """The 91-byte 1x1024 PNG that held the server for 320 s: refused in a message, in well under a second."""
    import io

    buf = io.BytesIO()
    Image.new("RGB", (1, 1024), (200, 30, 30)).save(buf, "PNG")
    label = nano_checkpoint.name
    for size in (None, 640):  # the model's own input size, and the slider's maximum
        start = time.perf_counter()
        status, items = backend.slot_overlays(buf.getvalue(), label, size, [0])
        assert time.perf_counter() - start < 5 and items == []
        assert "aspect ratio of" in status and "16:1 allowed" in status, status
    status, items = backend.slot_overlays(np.full((96, 128, 3), 120, np.uint8), label, None, [0])
    assert items and "Error" not in status


# -- 6: a broken pipe, a full disk ------------------------------------------------------------------


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    image = tmp_path / "img.png"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(image)
    code = ("import sys; from glmix_vis.cli.vis import main; "
            "rc = main(['slots', sys.argv[1], '--device', 'cpu']); print('x' * 100000); sys.exit(rc)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(image)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(), cwd=tmp_path)
    proc.stdout.close()  # what `| head` does once it has its lines
    _, err = proc.communicate(timeout=300)
    text = err.decode()
    assert "Traceback" not in text and "BrokenPipe" not in text and "Exception ignored" not in text, text
    assert proc.returncode == 141  # as a C tool killed by SIGPIPE reports


def _voc(base: Path, ids: list[str]) -> Path:
    from glmix_vis.data import save_palette_png

    voc = base / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    mask = np.zeros((40, 56), np.uint8)
    mask[:20, :28] = 15
    for image_id in ids:
        Image.fromarray(np.full((40, 56, 3), 90, np.uint8)).save(voc / "JPEGImages" / f"{image_id}.jpg")
        save_palette_png(voc / "SegmentationClass" / f"{image_id}.png", mask)
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            "<annotation><object><name>person</name></object></annotation>")
    (voc / "ImageSets/Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    return base


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_full_or_read_only_output_disk_is_one_line_and_loses_nothing(tmp_path, monkeypatch, capsys, code):
    import glmix_vis.wsss.outdir as outdir
    from glmix_vis.data import VOC_CLASSES

    ckpt = tmp_path / "voc_nano.safetensors"
    save_safetensors(timm.create_model("glnet_nano", num_classes=len(VOC_CLASSES) - 1).state_dict(), ckpt,
                     meta=dict(model="glnet_nano", classes=VOC_CLASSES, input_size=[40, 56]))
    ids = [f"2008_{k:06d}" for k in range(5)]
    root, out = _voc(tmp_path, ids), tmp_path / "out"
    args = ["eval", "--root", str(root), "--split", "train", "--checkpoint", str(ckpt), "--out", str(out),
            "--method", "cam", "--no-crf", "--workers", "0", "--device", "cpu"]
    real, written = outdir.save_palette_png, []

    def disk_fills_up(path, mask, palette=None):
        if len(written) == 2:
            raise OSError(code, os.strerror(code), str(path))
        written.append(path)
        return real(path, mask, palette) if palette is not None else real(path, mask)

    monkeypatch.setattr(outdir, "save_palette_png", disk_fills_up)
    assert wsss_main(args) == 2
    text = capsys.readouterr().err
    assert "Traceback" not in text, text
    err = text.strip().splitlines()[-1]
    assert [line for line in text.splitlines() if "error" in line] == [err]
    assert err.startswith("glmix-wsss eval: error: ") and os.strerror(code) in err, err
    assert str(out / "masks") in err
    assert (code == errno.EACCES) != ("cannot write" in err and "run the same command again" in err)
    monkeypatch.setattr(outdir, "save_palette_png", real)
    assert sorted(p.name for p in (out / "masks").glob("*.png")) == [f"{i}.png" for i in ids[:2]]
    assert wsss_main(args) == 0  # the same command resumes after the disk is fixed
    assert len(list((out / "masks").glob("*.png"))) == len(ids)


# -- 5: make-data's workers end with it -------------------------------------------------------------


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] not in ("Z", "X") and int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@linux_only
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_make_data_workers_end_with_a_killed_parent(tmp_path, sig):
    cmd = [sys.executable, "-m", "glmix_vis.cli.wsss", "make-data", "--out", str(tmp_path / "data"),
           "--train", "20000", "--val", "0", "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(),
                            start_new_session=True)
    try:
        def two_working() -> set[int]:
            if proc.poll() is not None:
                pytest.fail(f"make-data ended early ({proc.returncode}): {proc.stderr.read()[-2000:]!r}")
            workers = _children(proc.pid)
            return workers if len(workers) >= 2 and any((tmp_path / "data").rglob("*.jpg")) else set()

        workers = wait_until(two_working, 120, "make-data's workers")
        os.kill(proc.pid, sig)
        proc.wait(10)
        wait_until(lambda: not any(_alive(w) for w in workers), 5, f"workers {workers} to end")
        proc.stderr.read()  # EOF: no process holds the caller's stderr any more
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: whatever of it is left
        except ProcessLookupError:
            pass
        proc.communicate()


# -- 2: visitors' files do not outlive the server ----------------------------------------------------


def test_stale_scratch_folders_of_dead_servers_are_removed(tmp_path):
    from glmix_vis.app.serving import SCRATCH_PREFIX, remove_stale_scratch

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{SCRATCH_PREFIX}{dead.pid}-x1"
    (stale / "gradio").mkdir(parents=True)
    (stale / "gradio" / "upload.png").write_bytes(b"visitor's image")
    alive = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-x2"
    alive.mkdir()
    other = tmp_path / "unrelated"
    other.mkdir()
    assert remove_stale_scratch(tmp_path) == [stale]
    assert not stale.exists() and alive.exists() and other.exists()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@linux_only
@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_stopped_server_leaves_no_visitor_file(tmp_path, sig):
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file

    sys.path.insert(0, str(REPO / "eval"))
    try:
        from served_app import free_port, wait_for
    finally:
        sys.path.remove(str(REPO / "eval"))
    from glmix_vis.app.settings import DEMO_LABEL

    base = tmp_path / "tmp"
    base.mkdir()
    image = tmp_path / "visitor.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(image)
    port = free_port()
    env = dict(_env(), TMPDIR=str(base), GRADIO_TEMP_DIR=str(base), GRADIO_ANALYTICS_ENABLED="False",
               GLMIX_CHECKPOINT_DIR=str(tmp_path / "none"))
    proc = subprocess.Popen([sys.executable, "-m", "glmix_vis.cli.vis", "app", "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(url, proc, timeout=240)
        status, gallery, *_ = Client(url, verbose=False).predict(handle_file(str(image)), DEMO_LABEL, 128, [0], 0,
                                                                  api_name="/analyze")
        assert gallery, status
        written = _files(base)
        assert any(p.name == "visitor.png" for p in written), written  # gradio's copy of the upload
        assert any(p.suffix == ".jpg" for p in written), written  # the gallery pictures
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == (128 + sig if sig == signal.SIGTERM else 0), err
        assert b"Traceback" not in err, err.decode()
        assert _files(base) == [] and not list(base.iterdir())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_the_scratch_folder_is_undone_after_use(tmp_path, monkeypatch):
    import tempfile

    from glmix_vis.app.serving import ServerScratch

    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    before = (tempfile.tempdir, signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    with ServerScratch(tmp_path) as scratch:
        assert os.environ["GRADIO_TEMP_DIR"].startswith(str(scratch.root))
        assert Path(tempfile.mkdtemp()).parent == scratch.root
    assert "GRADIO_TEMP_DIR" not in os.environ and not scratch.root.exists()
    assert (tempfile.tempdir, signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_the_python_api_refuses_what_the_cli_refuses_and_a_failed_image_leaves_none():
    """Issue 25 items 4c and 7: after a failed ``set_image`` later calls must not serve the previous
    image's result; empty images, input sizes <= 0, thresholds outside [0, 1] or NaN and scales <= 0
    are refused by the Python API as by the CLI."""
    import math

    from glmix_vis.predictor import SlotPredictor
    from glmix_vis.wsss.recipe import MaskRecipe

    predictor = SlotPredictor.from_checkpoint(device="cpu")
    predictor.set_image(np.full((64, 80, 3), 120, np.uint8))
    assert predictor.hard_slots(0).shape == (64, 80)
    with pytest.raises(ValueError, match="empty image"):
        predictor.set_image(np.zeros((0, 80, 3), np.uint8))
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.hard_slots(0)  # not the previous image's groups resized to the new one
    with pytest.raises(ValueError, match="must be positive"):
        predictor.set_image(np.full((64, 80, 3), 120, np.uint8), input_size=-3)
    for bad in (dict(bg_threshold=5.0), dict(bg_threshold=math.nan), dict(scales=(1.0, 0.0))):
        with pytest.raises(ValueError):
            MaskRecipe("slot-cam", **bad)
