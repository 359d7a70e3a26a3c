"""glmix_vis.io: every image mode becomes RGB uint8; bad input is one ImageLoadError naming the file."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glmix_vis.io import (
    ImageLoadError,
    atomic_path,
    atomic_write_bytes,
    downscale_to,
    load_image,
    probe_image,
)


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def test_rgb_roundtrip_from_path_bytes_stream_and_pil(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    path = _save(Image.fromarray(arr), tmp_path / "x.png")
    for src in (path, str(path), path.read_bytes(), io.BytesIO(path.read_bytes()), Image.open(path)):
        out = load_image(src)
        assert out.dtype == np.uint8 and out.shape == (12, 17, 3)
        np.testing.assert_array_equal(out, arr)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(0, 240, dtype=np.uint8).reshape(12, 20)
    out = load_image(_save(Image.fromarray(gray, "L"), tmp_path / "g.png"))
    assert out.shape == (12, 20, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)
    bw = load_image(_save(Image.new("1", (5, 4), 1), tmp_path / "bw.png"))
    assert (bw == 255).all()


def test_rgba_and_la_are_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[0, :, 3] = 255  # opaque red-ish row
    rgba[1, :, 3] = 0  # fully transparent row -> white
    out = load_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
    np.testing.assert_array_equal(out[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(out[1, 0], [255, 255, 255])
    la = Image.fromarray(np.stack([np.zeros((2, 2), np.uint8), np.full((2, 2), 128, np.uint8)], -1), "LA")
    out = load_image(_save(la, tmp_path / "la.png"))
    assert np.all(np.abs(out.astype(int) - 127) <= 1)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img.info["transparency"] = 0
    img.putpixel((0, 0), 0)
    out = load_image(_save(img, tmp_path / "p.png", transparency=0))
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[1, 1], [10, 200, 30])


def test_16bit_png_is_scaled_to_8_bits(tmp_path):
    arr = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(arr), tmp_path / "d16.png")
    assert Image.open(path).mode.startswith("I")
    out = load_image(path)
    np.testing.assert_array_equal(out[0, :, 0], [0, 100, 255])


def test_float_and_int32_images():
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    np.testing.assert_array_equal(load_image(f)[0, :, 1], [0, 128, 255])
    i32 = Image.fromarray(np.array([[0, 10, 255]], dtype=np.int32), "I")
    np.testing.assert_array_equal(load_image(i32)[0, :, 2], [0, 10, 255])


def test_cmyk_jpeg(tmp_path):
    path = _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
    out = load_image(path)
    assert out.shape == (16, 16, 3)
    r, g, b = out[8, 8].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red
    arr[:, 20:] = (0, 0, 255)  # right half blue
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = load_image(_save(img, tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95))
    assert out.shape == (40, 20, 3)
    assert out[2, 10, 0] > 200 and out[2, 10, 2] < 60  # the left half is now on top
    assert out[-3, 10, 2] > 200


def test_exif_orientation_can_be_ignored(tmp_path):
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(img, tmp_path / "rot.jpg", exif=exif, quality=95)
    stored = load_image(path, exif_transpose=False)
    assert stored.shape == (20, 40, 3) and stored[10, 2, 0] > 200  # as stored: red still on the left
    np.testing.assert_array_equal(load_image(path), np.rot90(stored, k=-1))  # default: upright
    assert probe_image(path) == (20, 40)  # the stored size, from the header


def test_probe_image_refuses_what_load_image_refuses(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (30, 10)), tmp_path / "x.png")
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", lambda self: pytest.fail("decoded"))
    assert probe_image(path) == (10, 30)
    with pytest.raises(ImageLoadError, match=r"x\.png: refused, 30x10 = 300 pixels"):
        probe_image(path, max_pixels=299)
    with pytest.raises(ImageLoadError, match=r"missing\.png: no such file"):
        probe_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ImageLoadError, match=r"junk\.png: not a recognised image file"):
        probe_image(tmp_path / "junk.png")


def test_truncated_files_raise_naming_the_file(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for suffix in (".jpg", ".png"):
        full = _save(Image.fromarray(arr), tmp_path / f"full{suffix}")
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
        with pytest.raises(ImageLoadError, match=str(cut)):
            load_image(cut)


def test_non_image_and_missing_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not an image\n")
    with pytest.raises(ImageLoadError, match=r"notes\.txt: not a recognised image"):
        load_image(text)
    with pytest.raises(ImageLoadError, match="nope.png: no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="<bytes>"):
        load_image(b"\x89PNG garbage")
    assert issubclass(ImageLoadError, ValueError)


def _png_with_declared_size(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (valid CRC, tiny payload)."""
    data = io.BytesIO()
    Image.new("L", (1, 1)).save(data, "PNG")
    raw = bytearray(data.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(raw[24:29])
    raw[16:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(raw)


@pytest.mark.parametrize("side", [10_000, 40_000])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, side):
    path = tmp_path / f"bomb{side}.png"
    path.write_bytes(_png_with_declared_size(side, side))
    with pytest.raises(ImageLoadError, match=rf"bomb{side}\.png: refused"):
        load_image(path)


def test_custom_pixel_limit(tmp_path):
    path = _save(Image.new("RGB", (20, 20)), tmp_path / "small.png")
    with pytest.raises(ImageLoadError, match="exceeds the limit of 100"):
        load_image(path, max_pixels=100)
    assert load_image(path, max_pixels=None).shape == (20, 20, 3)


def test_downscale_to():
    img = np.zeros((300, 120, 3), dtype=np.uint8)
    out = downscale_to(img, 150)
    assert out.shape == (150, 60, 3) and out.dtype == np.uint8
    assert downscale_to(img, 400) is img
    with pytest.raises(ValueError):
        downscale_to(img, 0)


def test_atomic_path_replaces_only_a_finished_file(tmp_path):
    target = tmp_path / "sweep.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".npz") and not tmp.exists()
        np.savez(tmp, a=np.arange(3))  # np.savez would add .npz to any other name
    assert np.load(target)["a"].tolist() == [0, 1, 2]
    target.chmod(0o640)
    with pytest.raises(RuntimeError, match="interrupted"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert np.load(target)["a"].tolist() == [0, 1, 2]  # the old file is intact, the temp file gone
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.npz"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
        tmp.chmod(0o600)  # as a writer that creates owner-only files (safetensors >= 0.8)
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o640  # a rewrite keeps them


def test_atomic_write_bytes(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]
