"""Datasets: the scenes generator, the VOC reader (on hand-written fixtures) and the COCO reader."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from glmix_vis.cli.wsss import main as wsss_main
from glmix_vis.data import (
    VOC_CLASSES,
    DatasetError,
    VOCDataset,
    load_palette_png,
    open_dataset,
    save_palette_png,
    voc_palette,
)
from glmix_vis.data.scenes import SCENE_CLASSES, SceneConfig, generate_scenes, render_scene

N_TRAIN, N_VAL = 40, 10


@pytest.fixture(scope="module")
def scenes(make_scenes) -> Path:
    return make_scenes(N_TRAIN, N_VAL)


def _voc(out: Path) -> Path:
    return out / "VOCdevkit" / "VOC2012"


# -- palette ------------------------------------------------------------------------------------


def test_voc_palette_and_palette_png(tmp_path):
    pal = voc_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert (
        pal[0].tolist() == [0, 0, 0]
        and pal[1].tolist() == [128, 0, 0]
        and pal[15].tolist() == [192, 128, 128]
    )
    assert pal[255].tolist() == [224, 224, 192]
    mask = np.array([[0, 1, 255], [20, 3, 0]], dtype=np.uint8)
    save_palette_png(tmp_path / "m.png", mask, pal)
    assert Image.open(tmp_path / "m.png").mode == "P"
    np.testing.assert_array_equal(load_palette_png(tmp_path / "m.png"), mask)
    Image.fromarray(mask).save(tmp_path / "gray.png")
    with pytest.raises(ValueError, match=r"gray\.png: mask must be a palette"):
        load_palette_png(tmp_path / "gray.png")


# -- generator ----------------------------------------------------------------------------------


def test_scenes_layout_and_counts(scenes):
    voc = _voc(scenes)
    for sub, ext in (("JPEGImages", ".jpg"), ("SegmentationClass", ".png"), ("Annotations", ".xml")):
        files = sorted((voc / sub).iterdir())
        assert len(files) == N_TRAIN + N_VAL and all(f.suffix == ext for f in files)
    train = (voc / "ImageSets/Segmentation/train.txt").read_text().split()
    val = (voc / "ImageSets/Segmentation/val.txt").read_text().split()
    assert len(train) == N_TRAIN and len(val) == N_VAL and not set(train) & set(val)
    meta = json.loads((voc / "classes.json").read_text())
    assert meta["class_names"] == SCENE_CLASSES and meta["splits"] == {"train": N_TRAIN, "val": N_VAL}
    assert not list(voc.rglob("*.tmp"))


def test_scenes_are_deterministic_and_independent_of_count(scenes, tmp_path):
    same = tmp_path / "same"
    generate_scenes(same, 6, 2, workers=1, progress=False)
    other = tmp_path / "other"
    generate_scenes(other, 6, 2, config=SceneConfig(seed=1), workers=1, progress=False)
    for rel in (
        "JPEGImages/train_00005.jpg",
        "SegmentationClass/val_00001.png",
        "Annotations/train_00003.xml",
    ):
        assert (_voc(same) / rel).read_bytes() == (_voc(scenes) / rel).read_bytes()
    differs = [
        (_voc(other) / f"JPEGImages/train_{i:05d}.jpg").read_bytes()
        != (_voc(same) / f"JPEGImages/train_{i:05d}.jpg").read_bytes()
        for i in range(6)
    ]
    assert all(differs)


def test_scene_masks_have_void_band_and_match_xml(scenes):
    voc = _voc(scenes)
    seen: set[str] = set()
    for xml in sorted((voc / "Annotations").iterdir()):
        image_id = xml.stem
        img = Image.open(voc / "SegmentationClass" / f"{image_id}.png")
        assert img.mode == "P"
        mask = np.array(img)
        assert mask.shape == (160, 160)
        values = set(np.unique(mask).tolist())
        assert values <= set(range(len(SCENE_CLASSES))) | {255}
        assert 255 in values  # every image has at least one object, hence a border band
        assert (mask == 255).mean() < 0.2
        # a thin band along borders, not void blobs (thin horse legs may be swallowed whole)
        assert ndimage.distance_transform_cdt(mask == 255, metric="chessboard").max() <= 4
        root = ET.parse(xml).getroot()
        names = {o.findtext("name") for o in root.findall("object")}
        mask_names = {SCENE_CLASSES[v] for v in values - {0, 255}}
        assert names == mask_names and names
        seen |= names
        for obj in root.findall("object"):
            box = [int(obj.find("bndbox").findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]
            assert 1 <= box[0] <= box[2] <= 160 and 1 <= box[1] <= box[3] <= 160
            k = SCENE_CLASSES.index(obj.findtext("name"))
            rows, cols = np.nonzero(mask == k)
            assert rows.size and any(  # at least one object of this class lies inside this box
                (box[0] - 1 <= c <= box[2] - 1) and (box[1] - 1 <= r <= box[3] - 1)
                for r, c in zip(rows, cols)
            )
    assert seen == set(SCENE_CLASSES[1:])  # every class appears


def test_scene_objects_are_large_enough():
    sizes = []
    for i in range(30):
        scene = render_scene("train", i)
        assert 1 <= len(scene.objects) <= 3
        sizes += [max(o.bbox[2] - o.bbox[0], o.bbox[3] - o.bbox[1]) + 1 for o in scene.objects]
    assert min(sizes) >= 0.18 * 160 and max(sizes) <= 160


def test_scenes_of_voc_photo_size(scenes, tmp_path):
    out = tmp_path / "landscape"
    assert wsss_main(["make-data", "--out", str(out), "--train", "2", "--val", "1", "--size", "96x128", "--quiet"]) == 0
    ds = open_dataset("voc", out, "train")
    assert ds[0].image.shape == (96, 128, 3) and ds[0].mask.shape == (96, 128)
    assert ds.validate(progress=False) == []
    assert json.loads((_voc(out) / "classes.json").read_text())["generator"]["size"] == [96, 128]
    config = SceneConfig(size=(96, 128))
    right = []
    for i in range(12):
        for o in render_scene("train", i, config).objects:
            assert 1 <= o.bbox[0] <= o.bbox[2] <= 128 and 1 <= o.bbox[1] <= o.bbox[3] <= 96
            right.append(o.bbox[2])
    assert max(right) > 96  # objects use the whole width, not a square corner of it
    # a square (height, width) renders what the side alone does; the default's metadata keeps its form
    np.testing.assert_array_equal(render_scene("val", 3, SceneConfig(size=(160, 160))).image,
                                  render_scene("val", 3).image)
    assert json.loads((_voc(scenes) / "classes.json").read_text())["generator"]["size"] == 160
    with pytest.raises(SystemExit):
        wsss_main(["make-data", "--out", str(tmp_path / "bad"), "--size", "20x500", "--quiet"])


def test_voc_loader_reads_scenes(scenes):
    for root in (scenes, scenes / "VOCdevkit", _voc(scenes)):
        ds = open_dataset("voc", root, "train")
        assert ds.class_names == SCENE_CLASSES and len(ds) == N_TRAIN
    ds = open_dataset("scenes", scenes, "val")
    sample = ds[0]
    assert sample.image.shape == (160, 160, 3) and sample.image.dtype == np.uint8
    assert sample.mask is not None and sample.mask.shape == (160, 160)
    assert sample.labels.shape == (len(SCENE_CLASSES) - 1,) and sample.labels.dtype == np.float32
    assert ds.validate(progress=False) == []
    by_mask = VOCDataset(scenes, "train", labels="mask")
    by_xml = VOCDataset(scenes, "train", labels="xml")
    for i in range(len(by_mask)):
        np.testing.assert_array_equal(by_mask.image_labels(i), by_xml.image_labels(i))


def test_make_data_cli_refuses_different_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    assert wsss_main(["make-data", "--out", str(out), "--train", "4", "--val", "2", "--quiet"]) == 0
    assert wsss_main(["make-data", "--out", str(out), "--train", "4", "--val", "2", "--quiet"]) == 0
    assert wsss_main(["make-data", "--out", str(out), "--train", "3", "--val", "2", "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    keep = out / "README.txt"
    keep.write_text("mine")
    assert (
        wsss_main(["make-data", "--out", str(out), "--train", "3", "--val", "1", "--quiet", "--force"]) == 0
    )
    assert keep.exists() and len(list((_voc(out) / "JPEGImages").iterdir())) == 4
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "x.txt").write_text("x")
    assert wsss_main(["make-data", "--out", str(stranger), "--train", "2", "--val", "1", "--quiet"]) == 2


def test_make_data_leaves_a_complete_dataset_as_it_is(tmp_path, capsys):
    """Issue 24 item 7: the same command again says the dataset is there instead of regenerating it."""
    out = tmp_path / "cli"
    argv = ["make-data", "--out", str(out), "--train", "3", "--val", "1", "--quiet"]
    assert wsss_main(argv) == 0
    stamps = {p: p.stat().st_mtime_ns for p in _voc(out).rglob("*") if p.is_file()}
    capsys.readouterr()
    assert wsss_main(argv) == 0
    assert "already holds this dataset (3 train + 1 val images" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in _voc(out).rglob("*") if p.is_file()} == stamps
    (_voc(out) / "ImageSets" / "Segmentation" / "val.txt").unlink()  # incomplete (interrupted): made again
    assert wsss_main(argv) == 0
    assert "wrote 3 train + 1 val images" in capsys.readouterr().out


# -- VOC fixture ----------------------------------------------------------------------------------


def _xml(names: list[str], parts: bool = False) -> str:
    objs = "".join(
        f"<object><name>{n}</name>" + ("<part><name>head</name></part>" if parts else "") + "</object>"
        for n in names
    )
    return f"<annotation><filename>x.jpg</filename>{objs}</annotation>"


def _make_voc(base: Path, with_aug: str | None = None) -> Path:
    """A 4-image VOC2012 tree under ``base``; returns the VOC2012 folder."""
    voc = base / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    layout = {  # id: (mask classes, xml names or None)
        "2007_000001": ([15], ["person"]),
        "2007_000002": ([12, 13], ["dog", "horse", "person"]),  # XML also lists an unsegmented person
        "2007_000003": ([1], None),  # no XML: labels come from the mask
        "2007_000004": ([20], ["tvmonitor"]),
    }
    for image_id, (classes, names) in layout.items():
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(
            voc / "JPEGImages" / f"{image_id}.jpg"
        )
        mask = np.zeros((24, 32), dtype=np.uint8)
        for j, c in enumerate(classes):
            mask[4:20, 2 + 14 * j : 14 + 14 * j] = c
            mask[3, 2 + 14 * j : 14 + 14 * j] = 255
        save_palette_png(voc / "SegmentationClass" / f"{image_id}.png", mask, voc_palette())
        if names is not None:
            (voc / "Annotations" / f"{image_id}.xml").write_text(_xml(names, parts=True))
    ids = list(layout)
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:3]) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text(ids[3] + "\n\n")
    if with_aug is not None:
        aug = voc / "SegmentationClassAug" if with_aug == "inside" else voc.parent / "SegmentationClassAug"
        aug.mkdir()
        Image.fromarray(np.full((24, 32), 8, np.uint8), "L").save(
            aug / "2007_000001.png"
        )  # grayscale, SBD-style
        lines = [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png" for i in ids]
        (voc / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(lines) + "\n")
    return voc


def _onehot(*classes: int) -> list[float]:
    v = [0.0] * 20
    for c in classes:
        v[c - 1] = 1.0
    return v


def test_voc_root_variants_and_labels(tmp_path):
    voc = _make_voc(tmp_path)
    for root in (tmp_path, tmp_path / "VOCdevkit", voc):
        ds = open_dataset("voc", root, "train")
        assert ds.class_names == VOC_CLASSES and ds.image_ids == ["2007_000001", "2007_000002", "2007_000003"]
    assert ds.image_labels(0).tolist() == _onehot(15)
    assert ds.image_labels(1).tolist() == _onehot(12, 13, 15)  # from XML (parts ignored)
    assert ds.image_labels(2).tolist() == _onehot(1)  # from the mask
    assert VOCDataset(tmp_path, "train", labels="mask").image_labels(1).tolist() == _onehot(12, 13)
    sample = ds[1]
    assert sample.image_id == "2007_000002" and sample.image.shape == (24, 32, 3)
    assert set(np.unique(sample.mask)) == {0, 12, 13, 255}
    assert len(open_dataset("voc", tmp_path, "val")) == 1
    assert VOCDataset(tmp_path, "val", masks=False)[0].mask is None
    with pytest.raises(DatasetError, match="classes.json: not found"):
        open_dataset("scenes", tmp_path, "train")
    with pytest.raises(DatasetError, match="not a PASCAL VOC folder"):
        open_dataset("voc", tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages", "train")
    with pytest.raises(ValueError, match="unknown dataset"):
        open_dataset("imagenet", tmp_path, "train")


@pytest.mark.parametrize("where", ["inside", "sibling"])
def test_voc_train_aug_prefers_aug_masks(tmp_path, where):
    _make_voc(tmp_path, with_aug=where)
    ds = open_dataset("voc", tmp_path, "train_aug")
    assert len(ds) == 4
    assert set(np.unique(ds.load_mask(0))) == {8}  # from SegmentationClassAug
    assert ds.mask_path(1).parent.name == "SegmentationClass"  # fallback
    assert set(np.unique(ds.load_mask(1))) == {0, 12, 13, 255}
    assert ds.validate(progress=False) == []


def _expect(ds_factory, match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        ds = ds_factory()
        ds[1]


def test_voc_errors_name_the_file(tmp_path):
    voc = _make_voc(tmp_path)
    seg = voc / "SegmentationClass"

    def open_train():
        return VOCDataset(tmp_path, "train")

    with pytest.raises(
        DatasetError, match=r"ImageSets/Segmentation/train_aug\.txt: split list .* available splits: train, val$"
    ):
        VOCDataset(tmp_path, "train_aug")
    (voc / "Annotations/2007_000002.xml").write_text("<annotation><object><name>dog</name>")
    _expect(open_train, r"2007_000002\.xml: malformed XML")
    (voc / "Annotations/2007_000002.xml").write_text(_xml(["dog", "unicorn"]))
    _expect(open_train, r"2007_000002\.xml: unknown class name 'unicorn'")
    (voc / "Annotations/2007_000002.xml").write_text(_xml(["dog"]))
    good = (seg / "2007_000002.png").read_bytes()
    Image.open(seg / "2007_000002.png").convert("RGB").save(seg / "2007_000002.png")
    _expect(open_train, r"SegmentationClass/2007_000002\.png: mask must be a palette")
    save_palette_png(seg / "2007_000002.png", np.full((24, 32), 42, np.uint8))
    _expect(open_train, r"2007_000002\.png: mask has values \[42\]")
    save_palette_png(seg / "2007_000002.png", np.zeros((10, 32), np.uint8))
    _expect(open_train, r"2007_000002\.jpg: image is 32x24 pixels but its mask \S*SegmentationClass/2007_000002\.png is 32x10")
    (seg / "2007_000002.png").unlink()
    _expect(open_train, r"SegmentationClass/2007_000002\.png: mask file not found")
    (seg / "2007_000002.png").write_bytes(good)
    (voc / "JPEGImages/2007_000002.jpg").write_text("not a jpeg")
    _expect(open_train, r"JPEGImages/2007_000002\.jpg: not a recognised image")
    (voc / "JPEGImages/2007_000002.jpg").unlink()
    _expect(open_train, r"JPEGImages/2007_000002\.jpg: image file not found")
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n")
    with pytest.raises(DatasetError, match=r"val\.txt: split list is empty"):
        VOCDataset(tmp_path, "val")


def test_voc_validate_reports_every_problem(tmp_path):
    voc = _make_voc(tmp_path)
    (voc / "JPEGImages/2007_000001.jpg").unlink()
    (voc / "Annotations/2007_000003.xml").write_text(_xml(["cat", "dragon"]))
    ds = VOCDataset(tmp_path, "train")
    problems = ds.validate(progress=False, raise_errors=False)
    assert len(problems) == 2
    with pytest.raises(DatasetError, match=r"2 problem\(s\)(.|\n)*2007_000001\.jpg(.|\n)*2007_000003\.xml"):
        ds.validate(progress=False)


def test_class_metadata_errors(tmp_path):
    voc = _make_voc(tmp_path)
    (voc / "classes.json").write_text(json.dumps({"class_names": ["cat", "dog"]}))
    with pytest.raises(DatasetError, match=r"classes\.json: 'class_names' must start with 'background'"):
        VOCDataset(tmp_path, "train")
    (voc / "classes.json").write_text("{")
    with pytest.raises(DatasetError, match=r"classes\.json: cannot read"):
        VOCDataset(tmp_path, "train")


# -- COCO fixture -------------------------------------------------------------------------------


def _make_coco(root: Path) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "val2014").mkdir()
    images = [
        {"id": 42, "file_name": "COCO_val2014_000000000042.jpg", "height": 40, "width": 50},
        {"id": 7, "file_name": "COCO_val2014_000000000007.jpg", "height": 30, "width": 30},
    ]
    for info in images:
        Image.new("RGB", (info["width"], info["height"]), (90, 120, 30)).save(
            root / "val2014" / info["file_name"]
        )
    crowd = np.zeros((40, 50), dtype=np.uint8, order="F")
    crowd[30:40, 40:50] = 1
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(crowd))
    rle["counts"] = rle["counts"].decode()
    anns = [
        {"id": 1, "image_id": 42, "category_id": 18, "iscrowd": 0, "area": 30 * 30,  # big dog square
         "segmentation": [[5, 5, 35, 5, 35, 35, 5, 35]], "bbox": [5, 5, 30, 30]},
        {"id": 2, "image_id": 42, "category_id": 1, "iscrowd": 0, "area": 10 * 10,  # small person inside it
         "segmentation": [[15, 15, 25, 15, 25, 25, 15, 25]], "bbox": [15, 15, 10, 10]},
        {"id": 3, "image_id": 42, "category_id": 1, "iscrowd": 1, "area": 100,
         "segmentation": rle, "bbox": [40, 30, 10, 10]},
    ]  # fmt: skip
    cats = [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
    data = {"images": images, "annotations": anns, "categories": cats}
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(data))
    return root


def test_coco_reader(tmp_path):
    root = _make_coco(tmp_path / "coco")
    ds = open_dataset("coco", root, "val")
    assert ds.class_names == ["background", "person", "car", "dog"]  # category-id order
    assert ds.image_ids == ["COCO_val2014_000000000007", "COCO_val2014_000000000042"]
    empty, full = ds[0], ds[1]
    assert empty.labels.tolist() == [0, 0, 0] and not empty.mask.any()
    assert full.labels.tolist() == [1, 0, 1]
    assert full.mask.shape == (40, 50) and full.image.shape == (40, 50, 3)
    assert full.mask[10, 10] == 3  # dog
    assert full.mask[20, 20] == 1  # the smaller person wins over the larger dog
    assert full.mask[35, 45] == 255  # crowd region is ignored
    assert full.mask[0, 0] == 0
    assert ds.validate(progress=False) == []


def test_coco_errors_name_the_file(tmp_path):
    root = _make_coco(tmp_path / "coco")
    with pytest.raises(DatasetError, match=r"instances_train2014\.json: COCO annotation file not found"):
        open_dataset("coco", root, "train")
    (root / "val2014" / "COCO_val2014_000000000042.jpg").unlink()
    ds = open_dataset("coco", root, "val")
    with pytest.raises(DatasetError, match=r"COCO_val2014_000000000042\.jpg: image file not found"):
        ds[1]
    shutil.rmtree(root / "val2014")
    with pytest.raises(DatasetError, match=r"val2014: COCO image folder not found"):
        open_dataset("coco", root, "val")
    (root / "val2014").mkdir()
    path = root / "annotations" / "instances_val2014.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(
        DatasetError, match=r"instances_val2014\.json: annotation 1 has unknown category_id 99"
    ):
        open_dataset("coco", root, "val")
    path.write_text("[1, 2]")
    with pytest.raises(DatasetError, match="top level must be a JSON object"):
        open_dataset("coco", root, "val")
