"""Figures: structure (panels, sizes, files, fonts, colours), not pixels. A tiny random model keeps it fast."""

from __future__ import annotations

import functools

import matplotlib
import numpy as np
import pytest
from helpers import TINY_CLASSES as CLASSES  # noqa: E402  the classes of the tiny_predictor fixture
from PIL import Image

from glmix_vis.data.labels import LabelSpace
from glmix_vis.figures import (
    COLUMN_WIDTHS,
    LAYOUTS,
    colorize_mask,
    cosine_distances,
    evidence_panel,
    heatmap_overlay,
    k_medoids,
    mask_overlay,
    overlay_slots,
    representative_slot_ids,
    representative_slots,
    resolve_blocks,
    save_figure,
    slot_grid,
    slot_palette,
    soft_slot_maps,
    track_slot_colors,
)
from glmix_vis.figures.palette import OKABE_ITO, oklab_views, to_hex
from glmix_vis.loading import ModelInfo
from glmix_vis.models.factory import create_model
from glmix_vis.predictor import SlotPredictor

DPI = 40  # small rasters: these tests check structure, not looks


def image_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.images]


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (48, 72, 3), dtype=np.uint8)
    square = np.zeros((64, 64, 3), np.uint8)
    square[16:48, 16:48] = (220, 60, 40)
    return [wide, square]


# ------------------------------------------------------------------------------ palette
def test_palette_has_64_distinct_colours() -> None:
    pal = slot_palette()
    assert pal.shape == (64, 3) and pal.dtype == np.uint8
    assert len({tuple(c) for c in pal}) == 64
    assert [to_hex(c) for c in pal[:7]] == list(OKABE_ITO)
    normal = oklab_views(pal)[0]
    dist = np.linalg.norm(normal[:, None] - normal[None], axis=-1) + np.eye(64)
    assert dist.min() > 0.03  # perceptibly different under normal vision
    assert np.array_equal(slot_palette(100)[:64], pal)  # a longer palette keeps the first colours


# ------------------------------------------------------------------------------ tracking
def test_tracked_colours_follow_a_permutation() -> None:
    rng = np.random.default_rng(1)
    first = np.kron(rng.integers(0, 8, (4, 4)), np.ones((4, 4), int))  # 16x16, 8 labels in blocks
    perm = rng.permutation(10)  # block 2 has 10 slots, 2 of them empty
    second = np.kron(perm[first], np.ones((2, 2), int))  # same regions, relabelled, at 32x32
    colors = track_slot_colors([first, second], [8, 10])
    for s in np.unique(first):
        assert colors[1][perm[s]] == colors[0][s]
    assert len(set(colors[1].tolist())) == 10  # distinct within a block


def test_first_block_coloured_by_area_and_new_groups_get_new_colours() -> None:
    first = np.zeros((10, 10), int)
    first[:, 7:] = 1  # slot 0 is larger than slot 1
    colors = track_slot_colors([first], [3])
    assert colors[0][0] == 0 and colors[0][1] == 1
    second = np.full((10, 10), 2)  # slot 2 is the old slot 0; the old slot 1 splits into slots 0 and 1
    second[:5, 7:] = 0
    second[5:, 7:] = 1
    tracked = track_slot_colors([first, second], [3, 3])
    assert tracked[1][2] == tracked[0][0]
    assert tracked[0][1] in tracked[1][:2]  # one half keeps the colour...
    new = tracked[1][0] if tracked[1][1] == tracked[0][1] else tracked[1][1]
    assert new not in (tracked[0][0], tracked[0][1])  # ...the other gets one not seen before


# ------------------------------------------------------------------------------ k-medoids
def test_k_medoids_picks_one_medoid_per_separated_cluster() -> None:
    rng = np.random.default_rng(2)
    centres = np.eye(8)[:4] * 10
    sizes = [3, 7, 5, 9]
    points = np.concatenate([c + rng.normal(0, 0.3, (n, 8)) for c, n in zip(centres, sizes)])
    truth = np.repeat(np.arange(4), sizes)
    medoids, labels = k_medoids(cosine_distances(points), 4)
    assert sorted(truth[medoids].tolist()) == [0, 1, 2, 3]
    for c in range(4):  # the clusters found are the true ones
        assert len(set(labels[truth == c].tolist())) == 1
    again, _ = k_medoids(cosine_distances(points), 4)
    assert np.array_equal(medoids, again)  # deterministic


def test_representatives_are_visible_slots_by_share() -> None:
    feats = np.eye(6)
    share = np.array([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])
    ids = representative_slot_ids(feats, 3, share)
    assert ids.tolist() == [1, 3, 4]


# ------------------------------------------------------------------------------ render
def test_render_functions_shapes_and_semantics() -> None:
    image = np.full((20, 30, 3), 100, np.uint8)
    hard = np.zeros((10, 15), int)
    hard[:, 8:] = 1
    colors = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    out = overlay_slots(image, hard, colors, alpha=0.5, boundaries=False)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out[0, 0, 0] > out[0, 0, 2] and out[0, -1, 2] > out[0, -1, 0]
    outlined = overlay_slots(image, hard, colors, alpha=0.5)
    assert (outlined != out).any(axis=2)[:, 14:18].any() and not (outlined != out).any(axis=2)[:, :10].any()
    heat = heatmap_overlay(image, np.linspace(0, 1, 30)[None].repeat(20, 0))
    assert heat.shape == image.shape and not np.array_equal(heat[:, 0], heat[:, -1])
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:10] = 2
    pal = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    assert colorize_mask(mask, pal)[7, 7].tolist() == [0, 255, 0]
    over = mask_overlay(image, mask, pal)
    assert np.array_equal(over[0, 0], image[0, 0])  # background untouched
    assert over[7, 7, 1] > image[7, 7, 1]


# ------------------------------------------------------------------------------ layouts
def test_slot_grid_panels_titles_and_width(tiny_predictor, images) -> None:
    tiny_predictor.set_image(images[0])
    fig = slot_grid(tiny_predictor, blocks=[0, -1], dpi=DPI)
    assert len(image_axes(fig)) == 3
    assert fig.get_figwidth() == pytest.approx(COLUMN_WIDTHS["double"])
    titles = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert titles[0] == "input" and any(t.startswith("block 0") for t in titles)
    assert any(t.startswith(f"block {tiny_predictor.num_glmix_blocks - 1}") for t in titles)
    multi = slot_grid((tiny_predictor, images), width="single", dpi=DPI, row_labels=["a", "b"])
    assert len(image_axes(multi)) == 2 * (1 + min(4, tiny_predictor.num_glmix_blocks))
    assert multi.get_figwidth() == pytest.approx(COLUMN_WIDTHS["single"])
    assert {"a", "b"} <= {t.get_text() for t in multi.texts}
    single_titles = [t.get_text() for ax in multi.axes for t in ax.texts if t.get_text()]
    assert single_titles and max(t.count("\n") + 1 for t in single_titles) <= 2  # titles never outgrow images


def test_a_chosen_class_is_the_class_of_the_masks_too(tiny_predictor, images, monkeypatch) -> None:
    asked = []
    original = SlotPredictor.pseudo_mask

    def spy(self, method="slot-cam", labels=None, *args, **kwargs):
        asked.append(None if labels is None else np.asarray(labels).tolist())
        return original(self, method, labels, *args, **kwargs)

    monkeypatch.setattr(SlotPredictor, "pseudo_mask", spy)
    tiny_predictor.set_image(images[1])
    evidence_panel(tiny_predictor, target="star", crf=False, dpi=DPI)
    star = [0.0] * (len(CLASSES) - 1)
    star[CLASSES.index("star") - 1] = 1.0
    assert asked and all(a == star for a in asked)
    asked.clear()
    evidence_panel(tiny_predictor, crf=False, dpi=DPI)
    assert asked and all(a is None for a in asked)  # no chosen class: the predicted ones


def test_bad_block_index_says_how_many_blocks(tiny_predictor, images) -> None:
    tiny_predictor.set_image(images[0])
    n = tiny_predictor.num_glmix_blocks
    with pytest.raises(ValueError, match=f"has {n} GLMix blocks"):
        slot_grid(tiny_predictor, blocks=[n], dpi=DPI)
    assert resolve_blocks(n, [-1]) == [n - 1]


def test_soft_maps_and_representatives_panels(tiny_predictor, images) -> None:
    tiny_predictor.set_image(images[1])
    fig = soft_slot_maps(tiny_predictor, num_maps=3, dpi=DPI)
    assert len(image_axes(fig)) == 4
    assert len(fig.axes) == 5  # + the colourbar
    two = soft_slot_maps((tiny_predictor, images), blocks=[0, -1], slots=[0, 1], width="single", dpi=DPI)
    assert len(image_axes(two)) == 2 * 2 * 3  # images x blocks x (input + 2 slots)
    reps = representative_slots(tiny_predictor, k=4, dpi=DPI)
    assert len(image_axes(reps)) == 3 and len(reps.axes) == 4
    frames = [p for ax in reps.axes for p in ax.patches]
    assert len(frames) == 8  # each representative framed in the small grid and large


def test_evidence_panel_panels_and_legend(tiny_predictor, images) -> None:
    tiny_predictor.set_image(images[1])
    fig = evidence_panel(tiny_predictor, dpi=DPI)
    assert len(image_axes(fig)) == 6
    single = evidence_panel((tiny_predictor, images), target="star", width="single", crf=False, dpi=DPI)
    assert len(image_axes(single)) == 2 * 5
    assert single.get_figwidth() == pytest.approx(COLUMN_WIDTHS["single"])
    assert "CAM · star" in [t.get_text() for ax in single.axes for t in ax.texts]
    with pytest.raises(ValueError, match="unknown class 'cat'"):
        evidence_panel(tiny_predictor, target="cat", dpi=DPI)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_layout_leaves_a_handed_predictor_as_it_was(layout, tiny_predictor, images, tiny_atlas, monkeypatch) -> None:
    """The app and a notebook keep their image and its forward pass across a figure: given a
    predictor, a layout uses the image already set; given images (or another input size), its own copy."""
    if LAYOUTS[layout].needs_segmenter:
        pytest.skip("the tiny predictor is a classifier; test_train_seg draws the segmentation layout")
    draw = LAYOUTS[layout].function
    if layout == "atlas":  # the one layout with a required option: the atlas it reads
        draw = functools.partial(draw, atlas=tiny_atlas)
    tiny_predictor.set_image(images[0])
    before = (tiny_predictor.image, tiny_predictor.batch, tiny_predictor.output)
    ran_on = []
    original = SlotPredictor.set_image

    def spy(self, *args, **kwargs):
        ran_on.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SlotPredictor, "set_image", spy)
    draw(tiny_predictor, dpi=DPI)
    assert ran_on == []  # the image already set
    draw((tiny_predictor, images), dpi=DPI)
    draw(tiny_predictor, input_size=48, dpi=DPI)
    assert len(ran_on) == 3 and all(p is not tiny_predictor for p in ran_on)
    assert all(a is b for a, b in zip((tiny_predictor.image, tiny_predictor.batch, tiny_predictor.output), before))


def test_evidence_needs_a_head(images) -> None:
    model = create_model("glnet_nano", num_classes=0)
    headless = SlotPredictor(model, ModelInfo(name="glnet_nano", labels=LabelSpace(("background",)), input_size=64), "cpu")
    headless.set_image(images[0])
    with pytest.raises(ValueError, match="no classification head"):
        evidence_panel(headless, dpi=DPI)


def test_saved_files_embed_truetype_and_leave_rcparams_alone(tiny_predictor, images, tmp_path) -> None:
    before = dict(matplotlib.rcParams)
    tiny_predictor.set_image(images[0])
    fig = slot_grid(tiny_predictor, blocks=[-1], dpi=DPI)
    for ext in ("pdf", "svg", "png"):
        path = save_figure(fig, tmp_path / f"fig.{ext}")
        assert path.stat().st_size > 1000
    pdf = (tmp_path / "fig.pdf").read_bytes()
    assert b"/FontFile2" in pdf and b"/Subtype /Type3" not in pdf
    assert b"<svg" in (tmp_path / "fig.svg").read_bytes()
    with Image.open(tmp_path / "fig.png") as png:
        assert png.size[0] == round(COLUMN_WIDTHS["double"] * DPI)  # exported at the dpi it was laid out for
    fig.savefig(tmp_path / "direct.pdf")  # a notebook user's plain savefig embeds TrueType too
    assert b"/FontFile2" in (tmp_path / "direct.pdf").read_bytes()
    with pytest.raises(ValueError, match="unsupported extension"):
        save_figure(fig, tmp_path / "fig.jpg")
    assert dict(matplotlib.rcParams) == before


# ------------------------------------------------------------------------------ CLI
def run_cli(*argv: str) -> int:
    from glmix_vis.cli.vis import main

    return main(["figure", *argv])


def test_cli_folder_writes_one_figure_per_image(tiny_checkpoint, images, tmp_path, capsys) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "figs"
    rc = run_cli(str(folder), "--checkpoint", tiny_checkpoint, "--out", str(out), "--format", "png",
                 "--dpi", str(DPI), "--device", "cpu")
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img1.png"]
    combined = tmp_path / "all.pdf"
    rc = run_cli(str(folder), "--checkpoint", tiny_checkpoint, "--out", str(combined), "--combine",
                 "--layout", "soft", "--dpi", str(DPI), "--device", "cpu")
    assert rc == 0 and combined.stat().st_size > 0


def test_cli_errors_are_clear(tiny_checkpoint, images, tmp_path, capsys) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(images[0]).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    assert run_cli(str(good), "--checkpoint", tiny_checkpoint, "--blocks", "99", "--device", "cpu") == 2
    assert "GLMix blocks" in capsys.readouterr().err
    assert run_cli(str(bad), "--checkpoint", tiny_checkpoint, "--out", str(tmp_path / "x.pdf"), "--device", "cpu") == 2
    assert "bad.jpg" in capsys.readouterr().err
    assert run_cli(str(good), "--checkpoint", tiny_checkpoint, "--out", str(tmp_path / "x.tiff"), "--device", "cpu") == 2
    assert "extension" in capsys.readouterr().err
    assert run_cli(str(good), str(good), "--checkpoint", tiny_checkpoint, "--out", str(tmp_path / "one.pdf"),
                   "--device", "cpu") == 2
    assert "--combine" in capsys.readouterr().err
