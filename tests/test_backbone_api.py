"""The backbone's public API: slot maps, timm conventions, training, autocast, bad configs.

Small random models only (``glnet_nano`` and tiny GLNet configs), so the file runs in seconds.
"""

from __future__ import annotations

import pytest
import timm
import torch

import glmix_vis.models  # noqa: F401  (registers the GLNet family in timm)
from glmix_vis.models import MODEL_CONFIGS, GLNet, SlotOutput
from glmix_vis.models.glnet import OFFICIAL_VARIANTS
from glmix_vis.models.slots import input_size_of, run_slots

# One tiny model per architecture family (stl: non-overlapping stem + token-MHSA last stage;
# hybrid: overlapping stem, conv position embedding, dw MLP and pixel-MHSA blocks).
TINY_STL = dict(depth=(1, 1, 1, 1), embed_dim=(32, 64, 96, 128), head_dim=32, num_classes=10,
                mixing_modes=("glmix", "glmix", "glmix", "mha"), slot_init="ada_avgpool", num_slots=16,
                transition_layout="norm.proj", downsample_style="non_ovlp")
TINY_HYBRID = dict(depth=(1, 1, 2, 1), embed_dim=(32, 64, 96, 128), head_dim=32, num_classes=10,
                   mlp_ratios=(3, 3, 3, 3), mixing_modes=("glmix", "glmix", "glmix.mha_nchw", "mha_nchw"),
                   slot_init="ada_avgpool", num_slots=16, cpe_ks=3, downsample_style="ovlp",
                   transition_layout="proj.norm", mlp_dw=True)
TINY = {
    "stl": TINY_STL,
    "stl_paramslot_ls": dict(TINY_STL, slot_init="param", num_slots=10, layerscale=0.5),
    "hybrid": TINY_HYBRID,
    "hybrid_ls_tklb": dict(TINY_HYBRID, layerscale=0.5, token_labeling=True),
}


def _randomize_norm_stats(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so eval-mode norms are not the identity."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _tiny(kind: str, **kwargs) -> GLNet:
    torch.manual_seed(0)
    model = GLNet(**dict(TINY[kind], **kwargs))
    _randomize_norm_stats(model)
    return model.eval()


@pytest.fixture(scope="module")
def nano() -> GLNet:
    torch.manual_seed(0)
    model = timm.create_model("glnet_nano", num_classes=5)
    _randomize_norm_stats(model)
    return model.eval()


# ------------------------------------------------------------------------------- slot maps
@pytest.mark.parametrize("shape", [(2, 3, 96, 128), (3, 3, 75, 101)])
def test_forward_slots_maps(nano, shape):
    x = torch.randn(shape)
    with torch.no_grad():
        out = nano.forward_slots(x)
    assert isinstance(out, SlotOutput)
    b, _, height, width = shape
    assert out.logits.shape == (b, 5)
    assert len(out) == nano.num_glmix_blocks == len(out.maps)
    for slot_map in out:
        h, w = slot_map.grid
        s = slot_map.num_slots
        assert slot_map.input_size == (height, width)
        assert slot_map.logits.shape == (b, s, h * w)
        assert slot_map.slots.shape == (b, s, nano.embed_dims[slot_map.stage])
        dispatch, grouping = slot_map.dispatch, slot_map.grouping
        assert dispatch.shape == grouping.shape == (b, s, h, w)
        torch.testing.assert_close(dispatch.sum(1), torch.ones(b, h, w))
        torch.testing.assert_close(grouping.sum((2, 3)), torch.ones(b, s))
        hard = slot_map.hard
        assert hard.shape == (b, h, w) and hard.dtype == torch.int64
        assert 0 <= hard.min() and hard.max() < s
        up = slot_map.upsample()
        assert up.shape == (b, s, height, width)
        torch.testing.assert_close(up.sum(1), torch.ones(b, height, width))
        assert slot_map.upsample((20, 30), mode="nearest").shape == (b, s, 20, 30)
        assert slot_map.hard_upsampled().shape == (b, height, width)
        share = slot_map.share()
        assert share.shape == (b, s)
        torch.testing.assert_close(share.sum(1), torch.ones(b))
    # the first map of each stage sits on that stage's grid
    first = {m.stage: m.grid for m in reversed(out.maps)}
    feats = nano.forward_intermediates(x, intermediates_only=True)
    for stage, grid in first.items():
        assert grid == tuple(feats[stage].shape[-2:])


def test_forward_slots_logits_match_forward(nano):
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = nano.forward_slots(x)
        logits = nano(x)
        features = nano.forward_features(x)
    torch.testing.assert_close(out.logits, logits)
    torch.testing.assert_close(out.features, features)
    assert out.cls_logits is None and out.token_logits is None
    assert [m.name for m in out.select([0, -1])] == [out.maps[0].name, out.maps[-1].name]
    with pytest.raises(IndexError):
        out.select([len(out)])


def test_forward_slots_token_labeling():
    model = _tiny("hybrid_ls_tklb")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model.forward_slots(x)
        logits = model(x)
    torch.testing.assert_close(out.logits, logits)
    assert out.token_logits.shape == (2, 2 * 2, 10)
    torch.testing.assert_close(out.logits, out.cls_logits + 0.5 * out.token_logits.amax(1))


def test_split_gives_each_image_its_own_output():
    """``SlotOutput.split``: per-image views of a batched pass, each as that image's own pass gives it."""
    model = _tiny("hybrid_ls_tklb")
    x = torch.randn(3, 3, 64, 64)
    out = run_slots(model, x)
    parts = out.split()
    assert len(parts) == 3 and all(p.logits.shape[0] == 1 and len(p) == len(out) for p in parts)
    assert parts[1].maps[0].logits.data_ptr() == out.maps[0].logits[1:2].data_ptr()  # a view, not a copy
    alone = run_slots(model, x[1:2])
    torch.testing.assert_close(parts[1].logits, alone.logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(parts[1].token_logits, alone.token_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(parts[1].maps[-1].slots, alone.maps[-1].slots, rtol=1e-4, atol=1e-5)
    assert input_size_of(parts[2]) == (64, 64)


@pytest.mark.parametrize("kind", sorted(TINY))
def test_inference_kernels_match_autograd_path(kind):
    """Eval under no_grad takes the in-place, banded kernels; with autograd on, the plain ops."""
    model = _tiny(kind)
    x = torch.randn(2, 3, 64, 96)
    with torch.inference_mode():
        fast = model.forward_slots(x)
    slow = model.forward_slots(x)
    assert slow.logits.requires_grad
    torch.testing.assert_close(fast.logits, slow.logits.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.features, slow.features.detach(), atol=1e-5, rtol=1e-5)
    for a, b in zip(fast.maps, slow.maps):
        torch.testing.assert_close(a.logits, b.logits.detach(), atol=1e-5, rtol=1e-5)


def test_banded_mlp_matches_unbanded(monkeypatch):
    """The MLP runs in row bands when the feature map is large; bands must not change results."""
    from glmix_vis.models import glnet

    model = _tiny("stl")
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        whole = model(x)
        monkeypatch.setattr(glnet, "_MLP_MIN_BAND_ROWS", 7)
        monkeypatch.setattr(glnet, "_MLP_BAND_ELEMS", 7 * 64)
        banded = model(x)
    torch.testing.assert_close(banded, whole)


def test_autocast_bfloat16(nano):
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        ref = nano(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = nano.forward_slots(x)
            logits = nano(x)
    assert torch.isfinite(out.logits.float()).all()
    torch.testing.assert_close(out.logits.float(), logits.float())
    torch.testing.assert_close(logits.float(), ref, atol=0.1, rtol=0.1)
    for slot_map in out:
        assert slot_map.dispatch.dtype == torch.float32
        assert slot_map.grouping.dtype == torch.float32
        assert slot_map.upsample().dtype == torch.float32
        torch.testing.assert_close(slot_map.dispatch.sum(1), torch.ones(2, *slot_map.grid))


def test_autocast_training_step():
    model = _tiny("stl").train()
    x = torch.randn(2, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x).float().logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# ------------------------------------------------------------------------------- timm API
def test_features_only():
    model = timm.create_model("glnet_nano", features_only=True).eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        feats = model(x)
    assert len(feats) == 4
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    assert channels == list(MODEL_CONFIGS["glnet_nano"]["embed_dim"])
    assert reductions == [4, 8, 16, 32]
    for f, c, r in zip(feats, channels, reductions):
        assert f.shape == (2, c, 96 // r, 128 // r)
    subset = timm.create_model("glnet_nano", features_only=True, out_indices=(1, 3))
    assert subset.feature_info.channels() == [channels[1], channels[3]]


def test_forward_intermediates(nano):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final, inter = nano.forward_intermediates(x)
        torch.testing.assert_close(final, nano.forward_features(x))
        assert [t.shape[1] for t in inter] == nano.embed_dims
        assert all(t.is_contiguous() for t in inter)
        last_two = nano.forward_intermediates(x, indices=2, intermediates_only=True)
        assert [t.shape[1] for t in last_two] == nano.embed_dims[2:]
        picked = nano.forward_intermediates(x, indices=[0, -1], intermediates_only=True)
        assert [t.shape[1] for t in picked] == [nano.embed_dims[0], nano.embed_dims[3]]
        torch.testing.assert_close(picked[0], inter[0])
        early, early_inter = nano.forward_intermediates(x, indices=[1], stop_early=True)
        assert early.shape[1] == nano.embed_dims[1] and len(early_inter) == 1
        torch.testing.assert_close(early_inter[0], inter[1])
    with pytest.raises(ValueError):
        nano.forward_intermediates(x, indices=[4])
    with pytest.raises(ValueError):
        nano.forward_intermediates(x, indices=0)
    with pytest.raises(ValueError):
        nano.forward_intermediates(x, output_fmt="NHWC")


def test_prune_intermediate_layers():
    model = timm.create_model("glnet_nano").eval()
    kept = model.prune_intermediate_layers([1], prune_head=True)
    assert kept == [1] and len(model.stages) == 2
    with torch.no_grad():
        inter = model.forward_intermediates(torch.randn(1, 3, 64, 64), indices=[1], intermediates_only=True)
    assert inter[0].shape[1] == model.embed_dims[1]


def test_reset_classifier():
    model = _tiny("stl")
    x = torch.randn(2, 3, 64, 64)
    model.reset_classifier(7)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
    model.reset_classifier(0)
    with torch.no_grad():
        assert model(x).shape == (2, model.num_features)
        assert model.forward_slots(x).logits.shape == (2, model.num_features)
    model.reset_classifier(3, global_pool="")
    with torch.no_grad():
        assert model.forward_head(model.forward_features(x), pre_logits=True).ndim == 4
    with pytest.raises(ValueError):
        model.reset_classifier(3, global_pool="max")

    tklb = _tiny("hybrid_ls_tklb")
    tklb.reset_classifier(4)
    assert tklb.head.out_features == tklb.tklb_aux_head.out_features == 4
    with torch.no_grad():
        out = tklb.forward_slots(x)
    assert out.logits.shape == (2, 4) and out.token_logits.shape[-1] == 4
    assert tklb.get_classifier() is tklb.head


@pytest.mark.parametrize("name", list(MODEL_CONFIGS))
def test_pretrained_cfg(name):
    with torch.device("meta"):
        model = timm.create_model(name)
    cfg = model.pretrained_cfg
    assert len(cfg["mean"]) == len(cfg["std"]) == 3
    assert cfg["input_size"][0] == 3 and len(cfg["input_size"]) == 3
    assert cfg["num_classes"] == model.num_classes or name not in OFFICIAL_VARIANTS
    assert model.get_submodule(cfg["first_conv"]).in_channels == 3
    assert isinstance(model.get_submodule(cfg["classifier"]), torch.nn.Linear)


# ------------------------------------------------------------------------------- training
@pytest.mark.parametrize("kind", ["stl", "hybrid_ls_tklb"])
def test_training_step(kind):
    model = _tiny(kind, drop_path_rate=0.2, drop_rate=0.1).train()
    x = torch.randn(2, 3, 64, 64)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([1, 2]))
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    missing = [n for n, g in grads.items() if g is None]
    assert not missing, missing
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert model.stages[2].blocks[-1].drop_path.drop_prob > 0


def test_grad_checkpointing():
    model = _tiny("hybrid").train()
    x = torch.randn(2, 3, 64, 64)
    plain = model(x)
    plain.sum().backward()
    ref_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    assert all(s.grad_checkpointing for s in model.stages)
    out = model(x)
    out.sum().backward()
    torch.testing.assert_close(out, plain)
    for g, ref in zip((p.grad for p in model.parameters()), ref_grads):
        torch.testing.assert_close(g, ref)


def test_gradients_wrt_input_in_eval(nano):
    """Gradient-based saliency: eval mode with autograd on must still give input gradients."""
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    out = nano.forward_slots(x)
    out.logits[0, 1].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert out.maps[0].logits.requires_grad


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(nano):
    x = torch.randn(2, 3, 64, 96)
    model = timm.create_model("glnet_nano", num_classes=5)
    model.load_state_dict(nano.state_dict())
    model = model.eval().cuda()
    with torch.no_grad():
        ref = nano(x)
        out = model.forward_slots(x.cuda())
        with torch.autocast("cuda", dtype=torch.float16):
            half = model(x.cuda())
    torch.testing.assert_close(out.logits.cpu(), ref, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(half.float().cpu(), ref, atol=0.1, rtol=0.1)


# ------------------------------------------------------------------------------- bad configs
@pytest.mark.parametrize("kwargs, match", [
    (dict(mixing_modes=("glmix", "glmix", "conv", "mha")), "unknown mixing mode"),
    (dict(slot_init="ada_avgpool", num_slots=10), "square number of slots"),
    (dict(slot_init="kmeans"), "slot_init"),
    (dict(downsample_style="pyramid"), "downsample_style"),
    (dict(transition_layout="norm"), "transition_layout"),
    (dict(norm_layer="groupnorm"), "norm_layer"),
    (dict(depth=(1, 1, 1)), "one entry per stage"),
    (dict(embed_dim=(32, 64, 96, 100)), "divisible"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GLNet(**dict(TINY_STL, **kwargs))


def test_unknown_kwarg():
    with pytest.raises(TypeError, match="unexpected keyword"):
        GLNet(**TINY_STL, num_slot=16)


def test_param_slots_may_be_any_number():
    model = GLNet(**dict(TINY_STL, slot_init="param", num_slots=10)).eval()
    with torch.no_grad():
        assert model.forward_slots(torch.randn(1, 3, 64, 64)).maps[0].num_slots == 10


@pytest.mark.parametrize("name", ["glnet_nano", "glnet_stl"])
def test_state_dict_is_plain(name, tmp_path):
    """Parameters keep the standard contiguous layout, so safetensors can save them as they are."""
    from safetensors.torch import load_file, save_file

    model = timm.create_model(name, num_classes=3)
    assert all(t.is_contiguous() for t in model.state_dict().values())
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    model.load_state_dict(load_file(tmp_path / "w.safetensors"), strict=True)


def test_bad_input_rank(nano):
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        nano(torch.randn(3, 64, 64))


@pytest.mark.parametrize("name, backbone, with_1k_head", [("glnet_nano", 1_716_100, 1_973_100),
                                                         ("glnet_micro", 5_846_214, 6_231_214)])
def test_documented_param_counts(name, backbone, with_1k_head):
    """The counts stated in MODEL_CONFIGS' comment."""
    for classes, expected in ((0, backbone), (1000, with_1k_head)):
        with torch.device("meta"):
            model = timm.create_model(name, num_classes=classes)
        assert sum(p.numel() for p in model.parameters()) == expected
