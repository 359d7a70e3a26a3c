"""The app's atlas tab: a clicked pixel's slot in every block, its concept in a loaded atlas with
the concept's crops, and the image's per-block numbers (:mod:`glmix_vis.app.atlas_views`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import gradient_photo as _photo

gr = pytest.importorskip("gradio")

from glmix_vis.app import atlas_views  # noqa: E402
from glmix_vis.app.messages import AppError  # noqa: E402
from glmix_vis.data import open_dataset  # noqa: E402
from glmix_vis.data.scenes import SceneConfig, generate_scenes  # noqa: E402
from glmix_vis.discovery.atlas import AtlasConfig, build_atlas  # noqa: E402
from glmix_vis.discovery.gallery import write_gallery  # noqa: E402
from glmix_vis.discovery.quality import dataset_images  # noqa: E402
from glmix_vis.io import atomic_write_bytes  # noqa: E402
from glmix_vis.predictor import SlotPredictor  # noqa: E402


@pytest.fixture(scope="module")
def atlas_dir(tmp_path_factory, nano_checkpoint):
    """An atlas of block 1 built with the app's test model on a few small scenes."""
    root = generate_scenes(tmp_path_factory.mktemp("scenes"), 5, 1, SceneConfig(size=64), workers=1, progress=False)
    ds = open_dataset("scenes", root, "train")
    out = tmp_path_factory.mktemp("atlas")
    predictor = SlotPredictor.from_checkpoint(nano_checkpoint, device="cpu")
    atlas = build_atlas(predictor, lambda: dataset_images(ds), out, AtlasConfig(block=1, concepts=3, examples=2,
                                                                                fidelity_images=1, craft=False),
                        class_names=ds.class_names, total=len(ds), progress=False)
    atomic_write_bytes(out / "atlas.json", json.dumps(atlas).encode())
    write_gallery(atlas, out)
    return out


def test_pixel_detail_names_the_slot_of_every_block_and_its_concept(backend, nano_checkpoint, atlas_dir):
    result = backend.analysis(_photo(), nano_checkpoint.name, None)
    atlas = atlas_views.atlas_or_none(str(atlas_dir))
    text, crops = atlas_views.pixel_detail(result, atlas, 10, 20)
    assert text.count("| block |") == 1 and all(label in text for label in result.loaded.block_labels)
    slot = int(result.hard(1)[20, 10])
    assert f"slot {slot} is **concept" in text
    assert crops and all(c[0].ndim == 3 for c in crops)
    bare, none = atlas_views.pixel_detail(result, None, 10, 20)
    assert "Load an atlas" in bare and none == []
    assert atlas_views.pixel_detail(result, atlas, 10_000, 0) == ("", [])
    picture = atlas_views.concept_picture(result, atlas)
    assert picture.shape == result.shown.shape and not np.array_equal(picture, result.shown)


def test_block_metrics_need_no_ground_truth(backend, nano_checkpoint):
    text = atlas_views.block_metrics(backend.analysis(_photo(), nano_checkpoint.name, None))
    assert text.count("\n| block ") == len(backend.model(nano_checkpoint.name).block_labels)
    assert "slot-quality" in text


def test_a_missing_atlas_is_one_clear_message(tmp_path):
    assert atlas_views.atlas_or_none("") is None
    with pytest.raises(AppError, match="no atlas here"):
        atlas_views.atlas_or_none(str(tmp_path))
