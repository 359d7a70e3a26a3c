"""Class evidence (cam, token, slot-cam), test-time augmentation and the ImageNet-to-VOC map."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import timm
import torch
import torch.nn as nn

import glmix_vis.models  # noqa: F401  (registers the GLNet family in timm)
from glmix_vis.data.imagenet_voc import VOC_FOREGROUND, VOC_TO_IMAGENET, voc_class_map
from glmix_vis.models import GLNet, SlotMap, SlotOutput
from glmix_vis.wsss.evidence import (
    CAM,
    DEFAULT_SLOT_CAM,
    SlotCAM,
    SlotCAMConfig,
    aggregate_classes,
    available_evidence_methods,
    get_evidence_method,
    normalize_per_class,
)
from glmix_vis.wsss.evidence.tta import augments, tta_evidence
from glmix_vis.wsss.pipeline import class_evidence


@pytest.fixture(scope="module")
def nano() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("glnet_nano", num_classes=5).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 96, 128)  # non-square on purpose


@pytest.fixture(scope="module")
def nano_out(nano: nn.Module, images: torch.Tensor) -> SlotOutput:
    with torch.no_grad():
        return nano.forward_slots(images)


@pytest.fixture(scope="module")
def tiny_tklb(reference_dir) -> nn.Module:
    from safetensors.torch import load_file

    config = json.loads((reference_dir / "tiny_4g_tklb.json").read_text())["config"]
    model = GLNet(**config).eval()
    model.load_state_dict(load_file(str(reference_dir / "tiny_4g_tklb.weights.safetensors")))
    return model


def assert_normalised(maps: torch.Tensor) -> None:
    """float32, in [0, 1], every non-empty class map peaking at 1 (ReLU + divide by max)."""
    assert maps.dtype == torch.float32
    assert maps.min() >= 0 and maps.max() <= 1
    peaks = maps.flatten(2).amax(-1)
    assert torch.all((peaks > 0.999) | (peaks == 0)), peaks


# ------------------------------------------------------------------------------ registry
def test_registry_names_and_errors() -> None:
    assert available_evidence_methods() == ["cam", "eigencam", "gradcam", "gradcam++", "layercam", "scorecam",
                                            "seg", "slot-cam", "token", "xgradcam"]
    assert isinstance(get_evidence_method("slot_cam"), SlotCAM)
    assert isinstance(get_evidence_method("CAM", bias=False), CAM)
    with pytest.raises(ValueError, match="unknown evidence method"):
        get_evidence_method("hirescam")
    with pytest.raises(TypeError, match="unknown slot-cam options"):
        get_evidence_method("slot-cam", combin="mean")
    with pytest.raises(ValueError, match="combine"):
        get_evidence_method("slot-cam", combine="median")
    with pytest.raises(ValueError, match="class_reduce"):
        get_evidence_method("cam", class_reduce="mean")


# ------------------------------------------------------------------------------ cam
def test_cam_shape_and_normalisation(nano, images, nano_out) -> None:
    cam = get_evidence_method("cam")
    maps = cam(nano, nano_out)
    assert maps.shape == (2, 5, 96, 128)
    assert_normalised(maps)
    # an image batch gives the same maps as its SlotOutput
    torch.testing.assert_close(cam(nano, images), maps)
    # requested classes are a subset, in the requested order
    torch.testing.assert_close(cam(nano, nano_out, classes=[3, 1]), maps[:, [3, 1]])
    with pytest.raises(ValueError, match="out of range"):
        cam(nano, nano_out, classes=[5])


def test_cam_averages_to_the_logits(nano, nano_out) -> None:
    """With the bias, the head applied at every location averages exactly to the logits."""
    logit_maps = CAM().logit_maps(nano, nano_out)
    torch.testing.assert_close(logit_maps.mean((2, 3)), nano_out.logits, atol=1e-5, rtol=1e-5)
    no_bias = CAM(bias=False).logit_maps(nano, nano_out)
    torch.testing.assert_close(logit_maps - no_bias, nano.head.bias[None, :, None, None].expand_as(no_bias))


def test_class_map_aggregates_head_classes(nano, nano_out) -> None:
    groups = [[0, 3], [1, 2, 4]]
    logits = CAM().logit_maps(nano, nano_out)
    merged = CAM(class_map=groups).logit_maps(nano, nano_out)
    torch.testing.assert_close(merged[:, 0], torch.maximum(logits[:, 0], logits[:, 3]))
    lse = CAM(class_map=groups, class_reduce="logsumexp").logit_maps(nano, nano_out)
    torch.testing.assert_close(lse[:, 1], logits[:, [1, 2, 4]].logsumexp(1))
    assert aggregate_classes(logits, None) is logits
    with pytest.raises(ValueError, match="class_map"):
        CAM(class_map=[[0], [7]]).logit_maps(nano, nano_out)


def test_imagenet_head_gives_voc_evidence() -> None:
    torch.manual_seed(0)
    model = timm.create_model("glnet_nano", num_classes=1000).eval()
    maps = get_evidence_method("cam", class_map=voc_class_map())(model, torch.randn(1, 3, 64, 64), classes=[7, 11])
    assert maps.shape == (1, 2, 64, 64)
    assert_normalised(maps)


# ------------------------------------------------------------------------------ token
def test_token_evidence_on_tklb_model(tiny_tklb) -> None:
    torch.manual_seed(2)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = tiny_tklb.forward_slots(x)
    token = get_evidence_method("token")
    maps = token(tiny_tklb, out)
    assert maps.shape == (2, 10, 64, 96)
    assert_normalised(maps)
    b, _, h, w = out.features.shape
    expected = out.token_logits.transpose(1, 2).reshape(b, 10, h, w)
    torch.testing.assert_close(token.logit_maps(tiny_tklb, out), expected)
    # the other methods work on the token-labeling model too, and slot-cam can pool the token head
    assert get_evidence_method("cam")(tiny_tklb, out).shape == (2, 10, 64, 96)
    assert_normalised(get_evidence_method("slot-cam", base="token")(tiny_tklb, out))


def test_token_evidence_needs_a_token_head(nano, nano_out) -> None:
    with pytest.raises(ValueError, match="token-labeling"):
        get_evidence_method("token")(nano, nano_out)


# ------------------------------------------------------------------------------ slot-cam
def test_slot_cam_shape_and_options(nano, images, nano_out) -> None:
    assert get_evidence_method("slot-cam").config == DEFAULT_SLOT_CAM
    for opts in ({}, {"combine": "product"}, {"combine": "max"}, {"blocks": "all"}, {"blocks": "0,-1"},
                 {"pool": "grouping"}, {"cam_weight": 0.3}, {"cam_mix": "linear"}, {"contrast": "none"},
                 {"blocks": "last-stage"}, {"cam_weight": 0.0}, {"upsample": "nearest"}, {"dispatch_scale": 0.5}):
        maps = get_evidence_method("slot-cam", **opts)(nano, nano_out)
        assert maps.shape == (2, 5, 96, 128), opts
        assert_normalised(maps)
    sub = get_evidence_method("slot-cam")(nano, nano_out, classes=[4, 0])
    torch.testing.assert_close(sub, get_evidence_method("slot-cam")(nano, nano_out)[:, [4, 0]])
    with pytest.raises(IndexError):
        get_evidence_method("slot-cam", blocks=(9,))(nano, nano_out)


def test_slot_cam_blocks_selection(nano_out, nano) -> None:
    assert SlotCAM().select_maps(nano, nano_out) == [nano_out.maps[0]]  # default: the finest grid
    last = max(m.stage for m in nano_out.maps)
    picked = SlotCAM(blocks="last-stage").select_maps(nano, nano_out)
    assert picked and all(m.stage == last for m in picked)
    assert len(SlotCAM(blocks="all").select_maps(nano, nano_out)) == len(nano_out.maps)
    assert SlotCAM(blocks=(-1,)).select_maps(nano, nano_out) == [nano_out.maps[-1]]


def test_slot_cam_with_full_cam_weight_is_cam(nano, nano_out) -> None:
    torch.testing.assert_close(get_evidence_method("slot-cam", cam_weight=1.0)(nano, nano_out),
                               get_evidence_method("cam")(nano, nano_out), atol=1e-4, rtol=1e-4)


def test_slot_cam_head_scores_need_matching_widths(nano, nano_out) -> None:
    with pytest.raises(ValueError, match="head's width"):
        get_evidence_method("slot-cam", score="head")(nano, nano_out)
    torch.manual_seed(0)
    model = GLNet(depth=(1, 1, 1, 1), embed_dim=(32, 32, 64, 64), mixing_modes=("glmix",) * 4, num_slots=4,
                  slot_init="ada_avgpool", num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    maps = get_evidence_method("slot-cam", score="head")(model, x)
    assert maps.shape == (1, 3, 64, 64)
    assert_normalised(maps)
    out = model.forward_slots(x)
    assert [m.stage for m in SlotCAM(score="head", blocks="all").select_maps(model, out)] == [2, 3]
    assert [m.stage for m in SlotCAM(score="head").select_maps(model, out)] == [2]  # "first" of the head's width


class _Head(nn.Module):
    """A stand-in model: only the linear head matters when evidence gets a SlotOutput."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(2))
            self.head.bias.zero_()


def _synthetic_case(size: int = 64) -> tuple[SlotOutput, int]:
    """A coarse CAM whose 0.5 crossing sits at x = size/2, and slots that split at x = 3/8 size.

    Final grid 4x4: class 0 fires on columns 0-1, class 1 on columns 2-3. One GLMix block on an
    8x8 grid with two slots, a sharp partition: slot 0 = columns 0-2, slot 1 = columns 3-7.
    """
    feats = torch.zeros(1, 2, 4, 4)
    feats[:, 0, :, :2] = 1.0
    feats[:, 1, :, 2:] = 1.0
    left = torch.zeros(8, 8, dtype=torch.bool)
    left[:, :3] = True
    logits = torch.stack([torch.where(left, 10.0, -10.0), torch.where(left, -10.0, 10.0)]).reshape(1, 2, 64)
    slot_map = SlotMap(stage=2, block=0, grid=(8, 8), logits=logits, slots=torch.zeros(1, 2, 2),
                       input_size=(size, size))
    out = SlotOutput(logits=torch.zeros(1, 2), features=feats, maps=[slot_map])
    return out, size * 3 // 8


def _transition_width(profile: torch.Tensor) -> int:
    """Pixels where a profile normalised to [0, 1] is strictly between 0.1 and 0.9."""
    p = (profile - profile.min()) / (profile.max() - profile.min())
    return int(((p > 0.1) & (p < 0.9)).sum())


def test_slot_cam_follows_slot_boundaries() -> None:
    out, edge = _synthetic_case()
    model = _Head()
    cam = get_evidence_method("cam")(model, out)[0, 0]
    slots_only = {"pool": "grouping", "contrast": "none", "cam_weight": 0.0}
    slot = get_evidence_method("slot-cam", **slots_only)(model, out)[0, 0]
    assert torch.allclose(slot, slot[:1].expand_as(slot))  # every row is the same profile
    row = slot[0]
    # piecewise constant on the partition: 1 on slot 0, the slot-pooled CAM (0.2) on slot 1
    torch.testing.assert_close(row[: edge - 2], torch.ones(edge - 2), atol=1e-3, rtol=0)
    torch.testing.assert_close(row[edge + 2:], torch.full((64 - edge - 2,), 0.2), atol=1e-3, rtol=0)
    # the edge is at the slot boundary (x = 24), not at the CAM's crossing (x = 32) ...
    assert row[edge - 1] > 0.6 > row[edge + 1]
    assert cam[0, 31] > 0.5 > cam[0, 33] and cam[0, edge + 2] > 0.8
    # ... and it is much sharper than the bilinear ramp of the CAM
    assert _transition_width(row) <= 2 < 8 <= _transition_width(cam[0])
    # mixing the CAM back in blurs it again
    mixed = get_evidence_method("slot-cam", **{**slots_only, "cam_weight": 0.5, "cam_mix": "linear"})(model, out)
    assert _transition_width(mixed[0, 0, 0]) > _transition_width(row)


def test_slot_cam_default_recipe_is_sharp_and_local() -> None:
    out, edge = _synthetic_case()
    model = _Head()
    row = get_evidence_method("slot-cam")(model, out)[0, 0, 0]
    # min-max contrast: the slot without class-0 evidence scores 0, and the geometric mean keeps it 0
    torch.testing.assert_close(row[edge + 2:], torch.zeros(64 - edge - 2), atol=5e-3, rtol=0)
    torch.testing.assert_close(row[: edge - 2], torch.ones(edge - 2), atol=2e-2, rtol=0)
    assert _transition_width(row) <= 2
    # locality: slot 0 also takes a far patch (right edge) where the CAM has no class-0 evidence.
    # Slots alone paint it like the rest of slot 0; mixed with the CAM it stays background.
    far = out.maps[0].logits.reshape(2, 8, 8).clone()
    far[0, :, 7], far[1, :, 7] = 10.0, -10.0
    out.maps[0] = replace(out.maps[0], logits=far.reshape(1, 2, 64))
    slots_alone = get_evidence_method("slot-cam", cam_weight=0.0)(model, out)[0, 0, 0]
    default = get_evidence_method("slot-cam")(model, out)[0, 0, 0]
    assert slots_alone[-4:].min() > 0.9
    assert default[-4:].max() < 0.05 and default[: edge - 2].min() > 0.95


def test_slot_cam_combines_blocks() -> None:
    out, _ = _synthetic_case()
    second = SlotMap(stage=2, block=2, grid=(8, 8), logits=torch.zeros(1, 2, 64), slots=torch.zeros(1, 2, 2),
                     input_size=(64, 64))  # uninformative block: one uniform score everywhere
    out.maps.append(second)
    model = _Head()
    per_block = [p for _, p in SlotCAM(blocks="all").iter_block_maps(model, out, [0], (64, 64))]
    assert len(per_block) == 2
    a, b = per_block
    for combine, expected in (("mean", (a + b) / 2), ("max", torch.maximum(a, b)),
                              ("product", (a * b).sqrt())):
        got = SlotCAM(blocks="all", combine=combine, cam_weight=0.0).compute(model, out, classes=[0])
        torch.testing.assert_close(got, expected, msg=combine)


def test_slot_cam_config_parsing() -> None:
    assert SlotCAMConfig(blocks="0, -1").blocks == (0, -1)
    assert SlotCAMConfig(blocks=[2, 3]).blocks == (2, 3)
    with pytest.raises(ValueError, match="blocks"):
        SlotCAMConfig(blocks="deepest")
    with pytest.raises(ValueError, match="cam_weight"):
        SlotCAMConfig(cam_weight=1.5)
    for field, bad in (("contrast", "zscore"), ("cam_mix", "harmonic"), ("pool", "max")):
        with pytest.raises(ValueError, match=field):
            SlotCAMConfig(**{field: bad})


def test_normalize_per_class() -> None:
    maps = torch.tensor([[[[-1.0, 2.0], [4.0, 0.0]], [[0.0, -3.0], [0.0, 0.0]]]])
    norm = normalize_per_class(maps)
    torch.testing.assert_close(norm[0, 0], torch.tensor([[0.0, 0.5], [1.0, 0.0]]), atol=1e-5, rtol=0)
    assert torch.all(norm[0, 1] == 0)


# ------------------------------------------------------------------------------ TTA
def test_tta_single_scale_no_flip_is_the_method(nano, images) -> None:
    cam = get_evidence_method("cam")
    torch.testing.assert_close(tta_evidence(cam, nano, images, scales=(1.0,), flip=False), cam(nano, images))


@pytest.mark.parametrize("name", ["cam", "slot-cam"])
def test_tta_shapes_and_flip_equivariance(nano, images, name) -> None:
    method = get_evidence_method(name)
    maps = tta_evidence(method, nano, images, classes=[0, 2], scales=(1.0, 0.5, 1.5))
    assert maps.shape == (2, 2, 96, 128)
    assert_normalised(maps)
    mirrored = tta_evidence(method, nano, images.flip(-1), classes=[0, 2], scales=(1.0, 0.5, 1.5))
    torch.testing.assert_close(mirrored, maps.flip(-1), atol=2e-4, rtol=1e-4)
    assert not maps.requires_grad
    # maps drawn directly at another output size (e.g. the original image's)
    assert tta_evidence(method, nano, images, scales=(1.0,), size=(150, 200)).shape == (2, 5, 150, 200)


# ------------------------------------------------------------------------------ ImageNet -> VOC
def test_imagenet_voc_mapping() -> None:
    assert len(VOC_FOREGROUND) == 20 and list(VOC_TO_IMAGENET) == list(VOC_FOREGROUND)
    flat = [i for group in VOC_TO_IMAGENET.values() for i in group]
    assert all(isinstance(i, int) and 0 <= i <= 999 for i in flat)
    assert len(flat) == len(set(flat)), "the VOC groups must be disjoint"
    assert all(VOC_TO_IMAGENET[c] for c in VOC_FOREGROUND)
    assert voc_class_map() == [list(VOC_TO_IMAGENET[c]) for c in VOC_FOREGROUND]
    assert set(VOC_TO_IMAGENET["cat"]) == set(range(281, 286))
    assert set(VOC_TO_IMAGENET["dog"]) == set(range(151, 269))
    assert set(VOC_TO_IMAGENET["bird"]) == set(range(7, 25)) | set(range(80, 101)) | set(range(127, 147))


def test_imagenet_voc_names() -> None:
    """Spot-check indices against timm's ImageNet-1k class names."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    expected = {404: "airliner", 895: "warplane", 671: "mountain bike", 9: "ostrich", 472: "canoe",
                907: "wine bottle", 779: "school bus", 817: "sports car", 281: "tabby", 285: "Egyptian cat",
                559: "folding chair", 345: "ox", 532: "dining table", 151: "Chihuahua", 268: "Mexican hairless",
                339: "sorrel", 670: "motor scooter", 981: "ballplayer", 738: "flowerpot", 348: "ram",
                831: "studio couch", 820: "steam locomotive", 664: "monitor", 851: "television"}
    for index, name in expected.items():
        assert name in info.index_to_description(index), (index, info.index_to_description(index))


def test_slot_cam_tta_augments_the_dense_evidence_only(nano, images) -> None:
    dense_mode, whole = get_evidence_method("slot-cam"), get_evidence_method("slot-cam", tta="all")
    # no augmentation: both modes are the plain method
    plain = dense_mode(nano, images)
    for method in (dense_mode, whole):
        torch.testing.assert_close(tta_evidence(method, nano, images, scales=(1.0,), flip=False), plain)
    # augmented: "dense" = the CAM averaged over scales and flips, pooled into the image's own slots
    scales = (1.0, 0.5)
    cam = tta_evidence(get_evidence_method("cam"), nano, images, scales=scales, flip=False)
    expected = normalize_per_class(dense_mode.from_dense(nano, nano.forward_slots(images), cam, None, (96, 128)))
    got = tta_evidence(dense_mode, nano, images, scales=scales, flip=False)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, tta_evidence(whole, nano, images, scales=scales, flip=False), atol=1e-3)


def test_augments() -> None:
    assert not augments((1.0,), False) and not augments([1], False)
    assert augments((1.0,), True) and augments((1.0, 0.5), False) and augments((0.5,), False)


@pytest.mark.parametrize("name", ["cam", "slot-cam"])
def test_pipeline_evidence_without_augmentation_is_tta_at_one_scale_bit_for_bit(nano, images, name) -> None:
    """The cached forward pass the predictor reuses gives eval's maps exactly (same masks, same numbers)."""
    method = get_evidence_method(name)
    one = images[:1]
    expected = tta_evidence(method, nano, one, scales=(1.0,), flip=False, size=(150, 200))[0].numpy()
    assert (class_evidence(method, nano, one, (150, 200)) == expected).all()
    with torch.no_grad():  # as SlotPredictor.set_image runs it (autograd may pick other attention kernels)
        cached = nano.forward_slots(one)
    assert (class_evidence(method, nano, one, (150, 200), slots=cached) == expected).all()
    augmented = tta_evidence(method, nano, one, scales=(1.0, 0.5), flip=True, size=(150, 200))[0].numpy()
    assert (class_evidence(method, nano, one, (150, 200), slots=cached, scales=(1.0, 0.5), flip=True)
            == augmented).all()  # with augmentation the cached pass is not what is used
    with pytest.raises(ValueError, match="one image"):
        class_evidence(method, nano, images, (96, 128))
