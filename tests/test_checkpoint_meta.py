"""The checkpoint metadata schema (models/meta.py): every writer and reader agree on its fields."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from glmix_vis import load_model
from glmix_vis.cli._dispatch import main as dispatch_main
from glmix_vis.data import VOC_CLASSES
from glmix_vis.models.checkpoints import read_checkpoint_meta, save_safetensors
from glmix_vis.models.convert import convert_checkpoint
from glmix_vis.models.meta import HEAD_ALL, HEAD_FOREGROUND, SCHEMA_VERSION, CheckpointMeta
from glmix_vis.train import TrainConfig, checkpoint_meta
from glmix_vis.wsss.recipe import MaskRecipe


def test_round_trip_keeps_every_field_and_the_extras():
    meta = CheckpointMeta(model="glnet_nano", classes=["background", "a", "b"], head=HEAD_FOREGROUND,
                          input_size=(96, 128), mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2),
                          bg_thresholds={"cam": 0.4}, extra={"epoch": 3, "val_map": 0.9})
    raw = json.loads(json.dumps(meta.to_mapping()))  # as a safetensors header stores it
    assert raw["schema"] == SCHEMA_VERSION
    assert CheckpointMeta.from_mapping(raw) == meta


@pytest.mark.parametrize("raw", [
    {"classes": "abc", "input_size": [0, 5], "mean": [1, 2], "head": "sideways", "bg_thresholds": {"cam": 3}},
    {"classes": [1, 2], "input_size": True, "std": ["a", "b", "c"], "bg_thresholds": [0.5]},
])
def test_malformed_values_read_as_absent(raw):
    meta = CheckpointMeta.from_mapping(raw)
    assert meta.classes is None and meta.input_size is None and meta.mean is None and meta.std is None
    assert meta.head == HEAD_ALL and meta.bg_thresholds == {}


def test_class_lists_for_both_head_conventions():
    fg = CheckpointMeta(classes=["background", "a", "b"], head=HEAD_FOREGROUND)
    assert fg.head_class_names(2) == ["a", "b"] and fg.segmentation_classes(2) == ["background", "a", "b"]
    assert fg.segmentation_classes(3) is None
    every = CheckpointMeta(classes=["a", "b"], head=HEAD_ALL)
    assert every.head_class_names(2) == ["a", "b"] and every.segmentation_classes(2) == ["background", "a", "b"]
    assert every.head_class_names(5) is None and every.segmentation_classes(5) is None


def test_training_writes_the_schema(tmp_path):
    config = TrainConfig(root=str(tmp_path), out=str(tmp_path / "run"), model="glnet_nano", input_size=96)
    meta = CheckpointMeta.from_mapping(checkpoint_meta(config, ["background", "disk", "star"], epoch=1))
    assert meta.head == HEAD_FOREGROUND and meta.segmentation_classes(2) == ["background", "disk", "star"]
    assert meta.input_size == (96, 96) and meta.extra["epoch"] == 1


def test_a_converted_file_that_names_every_output_loads(tmp_path):
    """``checkpoint convert --classes`` lists one name per output; loading puts background in front."""
    src = tmp_path / "run.pth"
    torch.save({"model": timm.create_model("glnet_nano", num_classes=3).state_dict()}, src)
    classes = tmp_path / "classes.txt"
    classes.write_text("disk\nsquare\nstar\n")
    out = tmp_path / "nano.safetensors"
    assert dispatch_main("glmix-vis", "", {"checkpoint": "glmix_vis.cli.checkpoint_cmd"},
                         ["checkpoint", "convert", str(src), str(out), "--classes", str(classes),
                          "--input-size", "96", "128"]) == 0
    _, info = load_model(out, device="cpu")
    assert info.class_names == ["background", "disk", "square", "star"] and info.input_size == 96
    assert CheckpointMeta.from_mapping(read_checkpoint_meta(out)).input_size == (96, 128)


def test_a_converted_official_head_is_read_as_voc(tmp_path):
    src = tmp_path / "glnet_nano_in1k.pth"
    torch.save({"model": timm.create_model("glnet_nano", num_classes=1000).state_dict(), "epoch": 299}, src)
    result = convert_checkpoint(src, tmp_path / "in1k.safetensors")
    assert result.num_classes == 1000 and result.meta.classes is None
    _, info = load_model(result.path, device="cpu")
    assert info.class_names == VOC_CLASSES and info.head_names[404] == "airliner"


def test_wrong_class_count_names_the_file(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_safetensors(timm.create_model("glnet_nano", num_classes=3).state_dict(), path,
                     meta={"model": "glnet_nano", "classes": ["a", "b"], "head": HEAD_ALL})
    with pytest.raises(ValueError, match=r"bad\.safetensors: its metadata lists 2 class names"):
        load_model(path, device="cpu")


def test_tuned_thresholds_reach_the_model_info(tmp_path):
    path = tmp_path / "tuned.safetensors"
    meta = CheckpointMeta(model="glnet_nano", classes=["background", "a"], head=HEAD_FOREGROUND,
                          bg_thresholds={"slot-cam": 0.6})
    save_safetensors(timm.create_model("glnet_nano", num_classes=1).state_dict(), path, meta=meta.to_mapping())
    _, info = load_model(path, device="cpu")
    assert MaskRecipe("slot-cam").resolved(info).bg_threshold == 0.6
    assert MaskRecipe("cam").resolved(info).bg_threshold == 0.15
