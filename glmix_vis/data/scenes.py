"""Generated "scenes": a small, offline, deterministic WSSS dataset in the exact PASCAL VOC layout.

Each image holds 1-3 textured shapes (disk, square, triangle, star, ring, cross, horse
silhouette) on a textured background. Objects and backgrounds draw their fill from the same
texture/colour distribution, so only *shape* tells the classes apart. Masks are VOC-style
palette PNGs with a 255 void band along object borders: class masks in ``SegmentationClass``,
instance masks in ``SegmentationObject`` (0 background, object ``k`` = the ``k``-th object of the
XML, as VOC numbers them); XML annotations carry object names and boxes. Each image is seeded by ``(seed, split, index)`` alone, so image ``k`` does not
depend on how many images are generated, and the same seed gives the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from ..io import atomic_write_bytes
from ..workers import init_worker
from .base import DatasetError
from .palette import save_palette_png, voc_palette
from .voc import INSTANCE_DIR, METADATA_FILE

__all__ = [
    "SCENE_CLASSES",
    "Scene",
    "SceneConfig",
    "SceneObject",
    "complete_scenes",
    "ensure_instance_masks",
    "generate_scenes",
    "root_or_default",
    "render_scene",
    "scene_image_id",
]

SCENE_CLASSES: list[str] = ["background", "disk", "square", "triangle", "star", "ring", "cross", "horse"]
FORMAT_NAME = "glmix-scenes"
FORMAT_VERSION = 2
DEFAULT_SCENES_DIR = Path("~/.cache/glmix-vis/scenes-default").expanduser()  # the embedded default
MIN_CONTRAST = 0.25  # minimum mean-brightness difference between an object and what it covers
SPLITS = ("train", "val")
_SPLIT_CODE = {"train": 0, "val": 1}
_SUPERSAMPLE = 2  # sub-pixel samples per axis for antialiased shape edges


@dataclass(frozen=True)
class SceneConfig:
    """Generator settings; all of them (and the split sizes) are recorded in ``classes.json``.

    ``size`` is the side of a square image, or ``(height, width)``: ``(375, 500)`` is PASCAL VOC's
    typical landscape photo. Object sizes are fractions of the shorter side.
    """

    size: int | tuple[int, int] = 160
    seed: int = 0
    min_objects: int = 1
    max_objects: int = 3
    min_extent: float = 0.25  # object diameter as a fraction of the image side
    max_extent: float = 0.6
    void_width: int = 2  # width in pixels of the 255 band along object borders
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if not isinstance(self.size, int):  # a list read back from classes.json
            object.__setattr__(self, "size", tuple(int(v) for v in self.size))

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of every image."""
        if isinstance(self.size, int):
            return self.size, self.size
        return self.size[0], self.size[1]

    def check(self) -> None:
        if not isinstance(self.size, int) and len(self.size) != 2:
            raise ValueError(f"size must be one side or (height, width), got {self.size}")
        if min(self.shape) < 32:
            raise ValueError(f"size must be at least 32 pixels, got {self.size}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError("need 1 <= min_objects <= max_objects")
        if not 0.05 <= self.min_extent <= self.max_extent <= 1.0:
            raise ValueError("need 0.05 <= min_extent <= max_extent <= 1")
        if self.void_width < 0:
            raise ValueError("void_width must be >= 0")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must lie in 1..100")


@dataclass
class SceneObject:
    """One visible object: class, VOC bounding box (1-based inclusive pixels) and truncation."""

    class_index: int
    name: str
    bbox: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax
    truncated: bool


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8 class indices, 255 = void band
    objects: list[SceneObject] = field(default_factory=list)
    instances: np.ndarray | None = None  # (H, W) uint8: 0 background, k = objects[k - 1], 255 = void band


def scene_image_id(split: str, index: int) -> str:
    return f"{split}_{index:05d}"


# -- texture sources (loaded once per process) ------------------------------------------------


@lru_cache(maxsize=1)
def _sources() -> tuple[list[np.ndarray], np.ndarray]:
    """The texture photos shipped with scikit-image (brick, grass, gravel), plus the horse silhouette.

    Only stochastic textures: photos with objects in them (coins, text, cells) or regular
    patterns (checkerboards) would put shape-like distractors into every background.
    """
    import skimage.data as skd

    gray = [skd.brick(), skd.grass(), skd.gravel()]
    gray_f = [np.ascontiguousarray(g, dtype=np.float32) / 255.0 for g in gray]
    horse = ~skd.horse()  # the silhouette is False in the original
    rows, cols = np.nonzero(horse)
    horse = horse[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return gray_f, np.ascontiguousarray(horse)


def _photo_coords(rng: np.random.Generator, h: int, w: int, src_shape: tuple[int, ...]) -> np.ndarray:
    """Sampling coordinates of a randomly scaled, rotated and placed crop of a source photo."""
    zoom = float(np.exp(rng.uniform(np.log(0.4), np.log(1.6))))
    theta = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(theta) * zoom, np.sin(theta) * zoom
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy -= h / 2
    xx -= w / 2
    cy = rng.uniform(0, src_shape[0])
    cx = rng.uniform(0, src_shape[1])
    return np.stack([cy + s * xx + c * yy, cx + c * xx - s * yy])


def _colorize(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map a [0, 1]-ish field onto a random two-colour ramp."""
    lo, hi = float(t.min()), float(t.max())
    t = (t - lo) / (hi - lo) if hi > lo + 1e-6 else np.zeros_like(t)
    c1, c2 = rng.random(3, dtype=np.float32), rng.random(3, dtype=np.float32)
    return c1 + (c2 - c1) * t[..., None]


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An (h, w, 3) float32 texture in [0, 1]; objects and backgrounds share this distribution."""
    gray, _ = _sources()
    kind = rng.choice(3, p=[0.5, 0.3, 0.2])
    if kind == 0:  # colourised texture photo (brick, grass, gravel), randomly scaled and rotated
        src = gray[rng.integers(len(gray))]
        t = ndimage.map_coordinates(src, _photo_coords(rng, h, w, src.shape), order=1, mode="mirror")
        out = _colorize(t, rng)
    elif kind == 1:  # smooth noise
        sigma = rng.uniform(1.0, 6.0)
        t = ndimage.gaussian_filter(rng.standard_normal((h, w), dtype=np.float32), sigma)
        out = _colorize(t, rng)
    else:  # flat colour with fine noise
        out = np.broadcast_to(rng.random(3, dtype=np.float32), (h, w, 3)).copy()
    noise = rng.uniform(0.0, 0.06)
    out = out + noise * rng.standard_normal((h, w, 1), dtype=np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _ensure_contrast(texture: np.ndarray, under: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift the object's texture so its mean brightness differs from what it covers by at
    least MIN_CONTRAST. Which of the two is brighter is random, so brightness, like colour,
    never tells object from background; it only makes the object's outline visible."""
    if under.size == 0:
        return texture
    diff = float(texture.mean() - under.mean())
    if abs(diff) >= MIN_CONTRAST:
        return texture
    sign = np.sign(diff) if diff != 0 else (1.0 if rng.random() < 0.5 else -1.0)
    if not 0.0 <= float(under.mean()) + sign * MIN_CONTRAST <= 1.0:
        sign = -sign
    return np.clip(texture + (sign * MIN_CONTRAST - diff), 0.0, 1.0)


# -- shapes ------------------------------------------------------------------------------------
# Each takes object-frame coordinates (u, v), the shape's circumscribed radius being ~1.

_STAR_OUTER = np.array([1.0, 0.0])
_STAR_INNER = 0.42 * np.array([np.cos(np.pi / 5), np.sin(np.pi / 5)])


def _disk(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 1.0


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.78


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    inside = np.ones(u.shape, dtype=bool)
    for angle in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):  # outward edge normals
        inside &= u * np.cos(angle) + v * np.sin(angle) <= 0.55
    return inside


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Five-pointed star: fold the angle into one half-spike and test against its straight edge."""
    r = np.hypot(u, v)
    d = np.mod(np.arctan2(v, u), 2 * np.pi / 5)
    d = np.minimum(d, 2 * np.pi / 5 - d)
    edge = _STAR_INNER - _STAR_OUTER
    num = _STAR_OUTER[0] * edge[1] - _STAR_OUTER[1] * edge[0]
    den = np.cos(d) * edge[1] - np.sin(d) * edge[0]
    return r <= num / den


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= 0.5**2)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))


def _horse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    _, sil = _sources()
    h, w = sil.shape
    half = max(h, w) / 2
    rows = np.floor(v * half + h / 2).astype(np.int64)
    cols = np.floor(u * half + w / 2).astype(np.int64)
    ok = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    out = np.zeros(u.shape, dtype=bool)
    out[ok] = sil[rows[ok], cols[ok]]
    return out


_SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "disk": _disk,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "ring": _ring,
    "cross": _cross,
    "horse": _horse,
}
_SIZE_BOOST = {"horse": 1.15}  # the silhouette fills less of its circle; keep it as recognisable


def _rasterize(
    shape: str, cx: float, cy: float, radius: float, theta: float, aspect: float, flip: bool
) -> tuple[np.ndarray, int, int]:
    """Antialiased coverage (alpha) of one shape over its bounding window; returns (alpha, y0, x0)."""
    reach = radius * max(aspect, 1 / aspect) + 1
    x0, x1 = int(np.floor(cx - reach)), int(np.ceil(cx + reach))
    y0, y1 = int(np.floor(cy - reach)), int(np.ceil(cy + reach))
    ss = _SUPERSAMPLE
    sub = (np.arange(ss, dtype=np.float32) + 0.5) / ss
    xs = (np.arange(x0, x1, dtype=np.float32)[:, None] + sub[None, :]).ravel() - cx
    ys = (np.arange(y0, y1, dtype=np.float32)[:, None] + sub[None, :]).ravel() - cy
    dy, dx = np.meshgrid(ys, xs, indexing="ij")
    c, s = np.cos(theta), np.sin(theta)
    u = (c * dx + s * dy) / (radius * aspect)
    v = (-s * dx + c * dy) * aspect / radius
    if flip:
        u = -u
    inside = _SHAPES[shape](u, v)
    alpha = inside.reshape(y1 - y0, ss, x1 - x0, ss).mean(axis=(1, 3), dtype=np.float32)
    return alpha, y0, x0


def _clip_window(alpha: np.ndarray, y0: int, x0: int, shape: tuple[int, int]) -> tuple[np.ndarray, slice, slice]:
    """Crop a window's alpha to an image of ``shape``; returns (alpha_in_image, row slice, col slice)."""
    h, w = alpha.shape
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + h, shape[0]), min(x0 + w, shape[1])
    if ya >= yb or xa >= xb:
        return alpha[:0, :0], slice(0, 0), slice(0, 0)
    return alpha[ya - y0 : yb - y0, xa - x0 : xb - x0], slice(ya, yb), slice(xa, xb)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """One texture, or two split by a random straight edge (edges alone must not mean 'object')."""
    bg = _texture(rng, h, w)
    if rng.random() < 0.3:
        other = _texture(rng, h, w)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        phi = rng.uniform(0, 2 * np.pi)
        side = (xx - w / 2) * np.cos(phi) + (yy - h / 2) * np.sin(phi) > rng.uniform(-0.3, 0.3) * min(h, w)
        bg = np.where(side[..., None], other, bg)
    return bg


def render_scene(split: str, index: int, config: SceneConfig | None = None) -> Scene:
    """Render image ``index`` of ``split``: a pure function of (config, split, index)."""
    config = config or SceneConfig()
    h, w = config.shape
    side = min(h, w)
    rng = np.random.default_rng([config.seed, _SPLIT_CODE[split], index, FORMAT_VERSION])
    image = _background(rng, h, w)
    inst = np.zeros((h, w), dtype=np.int16)  # 0 = background, k = k-th placed object
    classes: list[int] = []
    full_area: list[float] = []
    truncated: list[bool] = []
    shape_names = SCENE_CLASSES[1:]
    n_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
    for _ in range(n_objects):
        cls = int(rng.integers(1, len(SCENE_CLASSES)))
        name = shape_names[cls - 1]
        texture = _texture(rng, h, w)
        for attempt in range(40):
            hi = config.max_extent if attempt < 15 else (config.min_extent + config.max_extent) / 2
            radius = rng.uniform(config.min_extent, hi) * side / 2 * _SIZE_BOOST.get(name, 1.0)
            cx, cy = rng.uniform(0.3 * radius, np.array([w, h]) - 0.3 * radius, size=2)
            alpha, y0, x0 = _rasterize(
                name, cx, cy, radius, rng.uniform(0, 2 * np.pi), float(np.exp(rng.uniform(-0.15, 0.15))),
                bool(rng.random() < 0.5),
            )  # fmt: skip
            total = float((alpha >= 0.5).sum())
            a_in, rows, cols = _clip_window(alpha, y0, x0, (h, w))
            cover = a_in >= 0.5
            area_in = float(cover.sum())
            if total == 0 or area_in < 0.75 * total:
                continue
            trial = inst.copy()
            trial[rows, cols][cover] = len(classes) + 1
            counts = np.bincount(trial.ravel(), minlength=len(classes) + 2)
            if all(counts[k + 1] >= 0.55 * full_area[k] for k in range(len(classes))):
                break
        else:
            continue  # no placement keeps every object mostly visible: leave this one out
        texture[rows, cols] = _ensure_contrast(texture[rows, cols], image[rows, cols][cover], rng)
        image[rows, cols] = image[rows, cols] * (1 - a_in[..., None]) + texture[rows, cols] * a_in[..., None]
        inst = trial
        classes.append(cls)
        full_area.append(area_in)
        truncated.append(area_in < total)
    image = _photometric(rng, image)
    return _finish(image, inst, classes, truncated, config)


def _photometric(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Global illumination gradient and sensor noise, then quantise to uint8."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / np.array([h, w], np.float32)[:, None, None] - 0.5
    phi = rng.uniform(0, 2 * np.pi)
    gain = 1.0 + rng.uniform(0.0, 0.5) * (xx * np.cos(phi) + yy * np.sin(phi))
    image = image * gain[..., None] + rng.uniform(0.0, 0.03) * rng.standard_normal(
        image.shape, dtype=np.float32
    )
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _finish(
    image: np.ndarray, inst: np.ndarray, classes: list[int], truncated: list[bool], config: SceneConfig
) -> Scene:
    lut = np.array([0, *classes], dtype=np.uint8)
    mask = lut[inst]
    if config.void_width > 0:
        k = config.void_width + 1
        band = ndimage.maximum_filter(inst, size=k, mode="nearest") != ndimage.minimum_filter(
            inst, size=k, mode="nearest"
        )
        mask[band] = 255
    objects: list[SceneObject] = []
    instances = np.zeros(mask.shape, dtype=np.uint8)
    for k, cls in enumerate(classes, start=1):
        own = inst == k
        if not (own & (mask != 255)).any():
            mask[own] = 255  # fully swallowed by the void band: drop it everywhere, labels stay consistent
            continue
        rows, cols = np.nonzero(own)
        bbox = (int(cols.min()) + 1, int(rows.min()) + 1, int(cols.max()) + 1, int(rows.max()) + 1)
        objects.append(SceneObject(cls, SCENE_CLASSES[cls], bbox, truncated[k - 1]))
        instances[own] = len(objects)  # numbered as the XML lists them, as VOC's SegmentationObject
    instances[mask == 255] = 255  # the same void band as the class mask
    return Scene(image=image, mask=mask, objects=objects, instances=instances)


# -- writing -----------------------------------------------------------------------------------


def _annotation_xml(image_id: str, scene: Scene) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    ET.SubElement(ET.SubElement(root, "source"), "database").text = FORMAT_NAME
    size = ET.SubElement(root, "size")
    h, w = scene.mask.shape
    for tag, value in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "1"
    for obj in scene.objects:
        el = ET.SubElement(root, "object")
        ET.SubElement(el, "name").text = obj.name
        ET.SubElement(el, "pose").text = "Unspecified"
        ET.SubElement(el, "truncated").text = str(int(obj.truncated))
        ET.SubElement(el, "difficult").text = "0"
        box = ET.SubElement(el, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.bbox):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8") + b"\n"


def _jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, optimize=False, subsampling=0)
    return buf.getvalue()


def _write_one(task: tuple[str, str, int, SceneConfig]) -> list[int]:
    voc_dir, split, index, config = task
    root = Path(voc_dir)
    image_id = scene_image_id(split, index)
    scene = render_scene(split, index, config)
    atomic_write_bytes(root / "JPEGImages" / f"{image_id}.jpg", _jpeg_bytes(scene.image, config.jpeg_quality))
    save_palette_png(root / "SegmentationClass" / f"{image_id}.png", scene.mask, voc_palette())
    save_palette_png(root / INSTANCE_DIR / f"{image_id}.png", scene.instances, voc_palette())
    atomic_write_bytes(root / "Annotations" / f"{image_id}.xml", _annotation_xml(image_id, scene))
    return sorted({o.class_index for o in scene.objects})


def _metadata(config: SceneConfig, n_train: int, n_val: int) -> dict:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "class_names": list(SCENE_CLASSES),
        "ignore_index": 255,
        "splits": {"train": n_train, "val": n_val},
        "generator": asdict(config),
    }


_OWNED = ("JPEGImages", "SegmentationClass", INSTANCE_DIR, "Annotations", "ImageSets", METADATA_FILE)


def _prepare_output(out: Path, meta: dict, force: bool) -> Path:
    """Create ``out``'s VOC folder; refuse to mix with a different non-empty dataset unless ``force``."""
    voc_dir = out / "VOCdevkit" / "VOC2012"
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        meta_path = voc_dir / METADATA_FILE
        try:
            existing = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            existing = None
        if existing != meta:
            if not force:
                what = "a generated dataset with different settings" if existing else "other files"
                raise FileExistsError(f"{out}: not empty, holds {what}; pass --force to replace the generator's own "
                                      "files in it (VOCdevkit/VOC2012's images, masks, lists; anything else is kept)")
            for name in _OWNED:  # remove only what this generator writes; anything else stays
                target = voc_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
    for sub in ("JPEGImages", "SegmentationClass", INSTANCE_DIR, "Annotations", "ImageSets/Segmentation"):
        (voc_dir / sub).mkdir(parents=True, exist_ok=True)
    return voc_dir


def _run_tasks(tasks: list[tuple[str, str, int, SceneConfig]], workers: int,
               job: Callable[[tuple[str, str, int, SceneConfig]], Any] = _write_one) -> Iterator[Any]:
    if workers <= 1 or len(tasks) < 64:
        yield from map(job, tasks)
        return
    _sources()  # load textures before forking so workers inherit them
    method = "fork" if "fork" in get_all_start_methods() else None
    # workers die with this process, even killed (init_worker); Ctrl-C drops the queued chunks
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context(method), initializer=init_worker)
    try:
        yield from pool.map(job, tasks, chunksize=16)
    finally:
        pool.shutdown(cancel_futures=True)


def generate_scenes(
    out: str | Path,
    n_train: int = 2000,
    n_val: int = 300,
    config: SceneConfig | None = None,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Write the dataset under ``out/VOCdevkit/VOC2012`` and return that folder.

    Rerunning with identical settings rewrites identical files; a different dataset already in
    ``out`` raises :class:`FileExistsError` unless ``force``. Every file is written atomically;
    ``classes.json`` goes first and the split lists last, so an interrupted run has no split lists.
    """
    config = config or SceneConfig()
    config.check()
    if n_train < 0 or n_val < 0 or n_train + n_val == 0:
        raise ValueError("need at least one image (train and val counts must be >= 0)")
    out = Path(out).expanduser()
    meta = _metadata(config, n_train, n_val)
    voc_dir = _prepare_output(out, meta, force)
    sets = voc_dir / "ImageSets" / "Segmentation"
    for split in SPLITS:
        (sets / f"{split}.txt").unlink(missing_ok=True)
    atomic_write_bytes(voc_dir / METADATA_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    counts = {"train": n_train, "val": n_val}
    tasks = [(str(voc_dir), split, i, config) for split in SPLITS for i in range(counts[split])]
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    with closing(_run_tasks(tasks, workers)) as written:  # closed (pool shut down) on Ctrl-C too
        for _ in tqdm(written, total=len(tasks), desc="make-data", unit="img", disable=not progress):
            pass
    for split in SPLITS:
        ids = "".join(f"{scene_image_id(split, i)}\n" for i in range(counts[split]))
        atomic_write_bytes(sets / f"{split}.txt", ids.encode())
    return voc_dir


def root_or_default(root: str | os.PathLike[str] | None, *, progress: bool = True) -> str:
    """``root`` as given, or, when there is none, the embedded default: the generated scenes in
    :data:`DEFAULT_SCENES_DIR`, created on first use. The one place that rule lives."""
    if root is not None:
        return os.fspath(root)
    ensure_scenes(DEFAULT_SCENES_DIR, progress=progress)
    return str(DEFAULT_SCENES_DIR)


def complete_scenes(out: str | Path, n_train: int = 2000, n_val: int = 300,
                    config: SceneConfig | None = None) -> Path | None:
    """``out``'s VOC folder when it already holds exactly this dataset (the same ``classes.json``
    and both split lists, which are written last), else ``None``."""
    config = config or SceneConfig()
    voc_dir = Path(out).expanduser() / "VOCdevkit" / "VOC2012"
    try:
        existing = json.loads((voc_dir / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    complete = all((voc_dir / "ImageSets" / "Segmentation" / f"{s}.txt").is_file() for s in SPLITS)
    wanted = json.loads(json.dumps(_metadata(config, n_train, n_val)))  # as it reads back from disk
    return voc_dir if existing == wanted and complete else None


def ensure_scenes(out: str | Path, n_train: int = 2000, n_val: int = 300, config: SceneConfig | None = None,
                  progress: bool = True) -> Path:
    """The dataset at ``out``, generated only if it is missing or was made with other settings
    (:func:`complete_scenes`); a complete one made before instance masks existed gets them."""
    voc_dir = complete_scenes(out, n_train, n_val, config)
    if voc_dir is not None:
        ensure_instance_masks(voc_dir, progress=progress)
        return voc_dir
    return generate_scenes(out, n_train, n_val, config, progress=progress)


def _instance_task(task: tuple[str, str, int, SceneConfig]) -> None:
    voc_dir, split, index, config = task
    scene = render_scene(split, index, config)
    save_palette_png(Path(voc_dir) / INSTANCE_DIR / f"{scene_image_id(split, index)}.png", scene.instances,
                     voc_palette())


def ensure_instance_masks(voc_dir: str | Path, workers: int | None = None, progress: bool = True) -> int:
    """Write the ``SegmentationObject`` masks a generated dataset lacks; returns how many.

    Folders made before instance masks existed have everything else: the generator settings in
    ``classes.json`` re-render each missing image's instance mask (images and class masks are the
    same bytes, so nothing else is rewritten and every earlier number stays valid). A folder that
    is not a generated dataset raises :class:`~glmix_vis.data.base.DatasetError`.
    """
    voc_dir = Path(voc_dir)
    try:
        meta = json.loads((voc_dir / METADATA_FILE).read_text(encoding="utf-8"))
        config = SceneConfig(**meta["generator"]) if meta.get("format") == FORMAT_NAME else None
    except (OSError, ValueError, KeyError, TypeError):
        config = None
    if config is None or meta.get("version") != FORMAT_VERSION:
        raise DatasetError(f"{voc_dir}: not a dataset written by this version of make-data "
                           f"({METADATA_FILE} missing or different); its instance masks cannot be made here")
    todo = [(str(voc_dir), split, i, config) for split in SPLITS for i in range(int(meta["splits"][split]))
            if not (voc_dir / INSTANCE_DIR / f"{scene_image_id(split, i)}.png").is_file()]
    if todo:
        (voc_dir / INSTANCE_DIR).mkdir(exist_ok=True)
        workers = workers if workers is not None else min(8, os.cpu_count() or 1)
        for _ in tqdm(_run_tasks(todo, workers, _instance_task), total=len(todo), desc="instance masks",
                      unit="img", disable=not progress):
            pass
    return len(todo)
