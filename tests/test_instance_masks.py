"""Instance masks (VOC's SegmentationObject format) in the generated scenes, VOC and COCO."""

from __future__ import annotations

import hashlib
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glmix_vis.data import DatasetError, VOCDataset, open_dataset
from glmix_vis.data.scenes import (
    SCENE_CLASSES,
    SceneConfig,
    ensure_instance_masks,
    ensure_scenes,
    generate_scenes,
    render_scene,
)

#: sha256 (first 16 hex digits) of image + class-mask bytes, rendered by the generator before it
#: made instance masks: adding them must not move a single pixel (every earlier number stays valid).
GOLDEN = [
    ("train", 0, SceneConfig(), "3367d7e4bd4197bf"),
    ("train", 7, SceneConfig(), "46db1d439619554e"),
    ("val", 3, SceneConfig(), "6386d70877b31a08"),
    ("val", 11, SceneConfig(size=(96, 128), seed=5), "b86ef64fd331eda7"),
]


@pytest.mark.parametrize("split,index,config,digest", GOLDEN)
def test_images_and_class_masks_are_bit_identical_to_before(split, index, config, digest):
    scene = render_scene(split, index, config)
    assert hashlib.sha256(scene.image.tobytes() + scene.mask.tobytes()).hexdigest()[:16] == digest


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes")
    return generate_scenes(out, 12, 4, workers=1, progress=False)


def test_scene_instances_follow_the_xml_and_the_class_mask(scenes):
    ds = VOCDataset(scenes, "train")
    assert ds.has_instances
    for i in range(len(ds)):
        inst, mask = ds.load_instances(i), ds.load_mask(i)
        assert Image.open(ds.instance_path(i)).mode == "P"
        np.testing.assert_array_equal(inst == 255, mask == 255)  # one void band
        np.testing.assert_array_equal(inst == 0, mask == 0)
        objects = ET.parse(ds.annotation_path(i)).getroot().findall("object")
        ids = sorted(set(np.unique(inst).tolist()) - {0, 255})
        assert ids == list(range(1, len(objects) + 1))  # numbered as the XML lists them
        for k, obj in enumerate(objects, start=1):
            assert set(np.unique(mask[inst == k]).tolist()) == {SCENE_CLASSES.index(obj.findtext("name"))}


def test_old_scenes_folder_gets_only_its_instance_masks(scenes, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(scenes.parent.parent, old)
    voc = old / "VOCdevkit" / "VOC2012"
    shutil.rmtree(voc / "SegmentationObject")  # as made before instance masks existed
    before = {p: p.stat().st_mtime_ns for p in voc.rglob("*") if p.is_file()}
    assert not VOCDataset(voc, "val").has_instances and VOCDataset(voc, "val").load_instances(0) is None
    assert ensure_instance_masks(voc, workers=1, progress=False) == 16
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # nothing else rewritten
    for p in sorted((scenes / "SegmentationObject").iterdir()):
        assert (voc / "SegmentationObject" / p.name).read_bytes() == p.read_bytes()
    assert ensure_instance_masks(voc, progress=False) == 0
    (voc / "SegmentationObject" / "val_00002.png").unlink()  # ensure_scenes fills the gap too
    meta = json.loads((voc / "classes.json").read_text())
    ensure_scenes(old, meta["splits"]["train"], meta["splits"]["val"], progress=False)
    assert (voc / "SegmentationObject" / "val_00002.png").is_file()


def test_instance_masks_of_a_foreign_folder_are_refused(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(DatasetError, match="not a dataset written by this version of make-data"):
        ensure_instance_masks(tmp_path)


def test_voc_reads_segmentation_object(scenes, tmp_path):
    voc = tmp_path / "VOC2012"
    shutil.copytree(scenes, voc)
    (voc / "classes.json").unlink()  # a plain VOC folder
    ds = open_dataset("voc", voc, "val")
    assert ds.has_instances and ds.load_instances(1).shape == (160, 160)
    ds.instance_path(1).unlink()
    with pytest.raises(DatasetError, match=r"SegmentationObject/val_00001\.png: mask file not found"):
        ds.load_instances(1)
    Image.fromarray(np.zeros((160, 160), np.uint8)).save(ds.instance_path(2))
    with pytest.raises(DatasetError, match="palette"):
        ds.load_instances(2)


def test_coco_instances(tmp_path):
    from test_data import _make_coco

    ds = open_dataset("coco", _make_coco(tmp_path / "coco"), "val")
    assert ds.has_instances
    inst = ds.load_instances(1)
    assert inst[10, 10] == 1 and inst[20, 20] == 2  # the dog, then the smaller person on top
    assert inst[35, 45] == 255 and inst[0, 0] == 0  # crowd void, background 0
    np.testing.assert_array_equal(inst == 255, ds.load_mask(1) == 255)
    assert not ds.load_instances(0).any()
