"""The class-name rule (data/labels.py): one LabelSpace per checkpoint, whoever asks."""

from __future__ import annotations

import pytest
import torch

from glmix_vis.data import VOC_CLASSES
from glmix_vis.data.imagenet_voc import IMAGENET_NUM_CLASSES, imagenet_class_names, voc_class_map
from glmix_vis.data.labels import LabelSpace
from glmix_vis.loading import ModelInfo
from glmix_vis.models.meta import HEAD_ALL, HEAD_FOREGROUND, CheckpointMeta
from glmix_vis.train import TrainConfig, checkpoint_meta


def test_trained_checkpoints_name_their_classes():
    meta = CheckpointMeta(classes=["background", "disk", "star"], head=HEAD_FOREGROUND)
    labels = LabelSpace.from_checkpoint(meta, 2)
    assert labels.source == "metadata" and labels.named and labels.multilabel
    assert labels.class_names == ("background", "disk", "star") and labels.head_size == 2
    assert labels.class_map is None and labels.head_names is None


def test_one_name_per_output_gets_background_in_front():
    labels = LabelSpace.from_checkpoint(CheckpointMeta(classes=["disk", "star"], head=HEAD_ALL), 2)
    assert labels.source == "metadata" and labels.class_names == ("background", "disk", "star")


def test_an_imagenet_head_is_read_as_voc():
    labels = LabelSpace.from_checkpoint(CheckpointMeta(), IMAGENET_NUM_CLASSES)
    assert labels.source == "imagenet" and labels.named and not labels.multilabel
    assert list(labels.class_names) == VOC_CLASSES and labels.head_size == IMAGENET_NUM_CLASSES
    assert labels.head_names == imagenet_class_names()
    assert [list(g) for g in labels.class_map] == voc_class_map()


def test_an_imagenet_head_keeps_the_names_its_file_gives():
    names = [f"n{k}" for k in range(IMAGENET_NUM_CLASSES)]
    labels = LabelSpace.from_checkpoint(CheckpointMeta(classes=names, head=HEAD_ALL), IMAGENET_NUM_CLASSES)
    assert labels.source == "imagenet" and labels.head_names[404] == "n404"


def test_a_trained_head_of_1000_classes_is_not_imagenet():
    names = ["background", *(f"c{k}" for k in range(IMAGENET_NUM_CLASSES))]
    labels = LabelSpace.from_checkpoint(CheckpointMeta(classes=names, head=HEAD_FOREGROUND), IMAGENET_NUM_CLASSES)
    assert labels.source == "metadata" and labels.class_names[1] == "c0" and labels.class_map is None


def test_unnamed_heads_get_generic_names():
    labels = LabelSpace.from_checkpoint(CheckpointMeta(), 3)
    assert labels.source == "generic" and not labels.named
    assert labels.class_names == ("background", "class_0", "class_1", "class_2")
    headless = LabelSpace.from_checkpoint(CheckpointMeta(), 0)
    assert headless.class_names == ("background",) and headless.head_size == 0


@pytest.mark.parametrize("meta", [CheckpointMeta(classes=["a", "b"], head=HEAD_ALL),
                                  CheckpointMeta(classes=["background", "a", "b", "c"], head=HEAD_FOREGROUND)])
def test_names_that_do_not_fit_the_head_are_an_error(meta):
    with pytest.raises(ValueError, match=rf"lists {len(meta.classes)} class names \({meta.head} outputs\) "
                                         r"but the head has 5 outputs"):
        LabelSpace.from_checkpoint(meta, 5)


def test_a_label_space_checks_itself():
    with pytest.raises(ValueError, match="2 groups for 1 foreground classes"):
        LabelSpace(("background", "a"), class_map=[[0], [1]])
    with pytest.raises(ValueError, match="give the class_map too"):
        LabelSpace(("background", "a"), head_names=("x",))
    with pytest.raises(ValueError, match="unknown label source"):
        LabelSpace(("background", "a"), source="guess")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least the background"):
        LabelSpace(())
    labels = LabelSpace(["background", "a"])  # lists become tuples: the value is frozen and hashable
    assert labels.class_names == ("background", "a") and hash(labels) == hash(LabelSpace(("background", "a")))


def test_model_info_reads_its_label_space():
    labels = LabelSpace(("background", "p", "q"), class_map=[[0, 3], [1, 2]], head_names=("w", "x", "y", "z"),
                        multilabel=False, source="imagenet")
    info = ModelInfo(name="x", labels=labels)
    assert info.class_names == ["background", "p", "q"] and info.foreground_names == ["p", "q"]
    assert info.class_map == [[0, 3], [1, 2]] and info.head_names == ["w", "x", "y", "z"]
    assert not info.multilabel and info.named
    scores = info.class_scores(torch.tensor([0.0, 0.0, 0.0, 0.0]))
    assert scores.tolist() == pytest.approx([0.5, 0.5])
    assert "ImageNet-1k head" in info.knowledge_note()


def test_training_writes_what_the_rule_reads_back(tmp_path):
    config = TrainConfig(root=str(tmp_path), out=str(tmp_path / "run"), model="glnet_nano")
    meta = CheckpointMeta.from_mapping(checkpoint_meta(config, ["background", "disk", "star"]))
    assert meta.extra["num_classes"] == 2
    assert LabelSpace.from_checkpoint(meta, 2) == LabelSpace(("background", "disk", "star"), "metadata")
