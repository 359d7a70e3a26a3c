"""GLNet behaves like any timm model: pretrained weights through the builder (also with
``features_only``, ``in_chans`` and ``pretrained_cfg_overlay``), FX tracing, consistent cfgs.

timm's own ``tests/test_models.py`` is run against the family by ``eval/timm_model_tests.sh``;
these tests pin each convention on small models so a regression shows here first.
"""

from __future__ import annotations

import os

import pytest
import timm
import torch
from timm.models import adapt_input_conv, get_notrace_functions, get_notrace_modules

import glmix_vis.models  # noqa: F401  (registers the GLNet family in timm)
from glmix_vis.models.checkpoints import resolve_checkpoint
from glmix_vis.models.glnet import MODEL_CONFIGS, OFFICIAL_VARIANTS


def _official_layout(model: torch.nn.Module) -> dict:
    """What the authors' ``save_model`` writes (hydra config aside): weights under ``model``."""
    return {"model": {k: v.clone() for k, v in model.state_dict().items()}, "epoch": 299}


@pytest.fixture()
def nano_in1k(tmp_path, monkeypatch):
    """A 1000-class glnet_nano with distinct weights, saved as ``glnet_nano.pth`` in the checkpoint dir."""
    torch.manual_seed(0)
    model = timm.create_model("glnet_nano", num_classes=1000).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    monkeypatch.setenv("GLMIX_CHECKPOINT_DIR", str(tmp_path))
    torch.save(_official_layout(model), tmp_path / "glnet_nano.pth")
    return model


def _same_weights(a: torch.nn.Module, b: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> None:
    got = a.state_dict()
    for k, v in b.items():
        if k.startswith(skip):
            continue
        assert torch.equal(got[k], v), k


def test_features_only_pretrained_loads_before_wrapping(nano_in1k):
    feats = timm.create_model("glnet_nano", pretrained=True, features_only=True).eval()
    # timm's getter wrapper keeps the backbone as ``model``; every backbone weight came from the file
    backbone = {k: v for k, v in nano_in1k.state_dict().items() if not k.startswith(("head.", "norm."))}
    got = {k.removeprefix("model."): v for k, v in feats.state_dict().items()}
    assert all(torch.equal(got[k], v) for k, v in backbone.items() if k in got)
    assert sum(k in got for k in backbone) > 0.9 * len(backbone)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        expected = nano_in1k.forward_intermediates(x, intermediates_only=True)
        outs = feats(x)
    assert [o.shape[1] for o in outs] == feats.feature_info.channels()
    for o, e in zip(outs, expected):
        torch.testing.assert_close(o, e)


@pytest.mark.parametrize("in_chans", [1, 4])
@pytest.mark.parametrize("num_classes", [1000, 5, 0])
def test_in_chans_adapts_the_stem_like_timm(nano_in1k, in_chans, num_classes):
    model = timm.create_model("glnet_nano", pretrained=True, in_chans=in_chans, num_classes=num_classes)
    stem = model.pretrained_cfg["first_conv"] + ".weight"
    rgb = nano_in1k.state_dict()[stem]
    torch.testing.assert_close(model.state_dict()[stem], adapt_input_conv(in_chans, rgb.clone()))
    _same_weights(model, nano_in1k.state_dict(), skip=(stem, "head."))
    if num_classes == 1000:
        _same_weights(model, {k: v for k, v in nano_in1k.state_dict().items() if k.startswith("head.")})
    else:
        assert model.checkpoint_report.reset_heads == (["head"] if num_classes else [])
    with torch.no_grad():
        out = model.eval()(torch.randn(1, in_chans, 64, 64))
    assert out.shape == (1, num_classes or model.num_features)


def test_pretrained_cfg_overlay_file_is_honoured(tmp_path, nano_in1k):
    other = timm.create_model("glnet_nano", num_classes=1000)
    path = tmp_path / "elsewhere" / "my_nano.pth"
    path.parent.mkdir()
    torch.save(_official_layout(other), path)
    model = timm.create_model("glnet_nano", pretrained=True, num_classes=1000,
                              pretrained_cfg_overlay=dict(file=str(path)))
    _same_weights(model, other.state_dict())
    assert model.pretrained_cfg["file"] == str(path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        timm.create_model("glnet_nano", pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "missing.pth")))


def test_bundled_demo_weights_are_the_nano_default(monkeypatch, tmp_path):
    monkeypatch.setenv("GLMIX_CHECKPOINT_DIR", str(tmp_path))  # nothing there: the package's file
    model = timm.create_model("glnet_nano", pretrained=True)
    assert model.num_classes == 5 and model.checkpoint_report.path.name == "glnet_nano_scenes.safetensors"
    listed = {n.split(".")[0] for n in timm.list_models("glnet_*", pretrained=True)}
    assert listed == {*OFFICIAL_VARIANTS, "glnet_nano"}  # glnet_micro has no published weights
    with pytest.raises(FileNotFoundError, match="GLMIX_CHECKPOINT_DIR"):
        timm.create_model("glnet_stl", pretrained=True)


def test_a_same_named_folder_does_not_hide_the_registered_name(tmp_path, monkeypatch, nano_in1k):
    work = tmp_path / "work"
    (work / "glnet_nano").mkdir(parents=True)  # e.g. training outputs named after the model
    monkeypatch.chdir(work)
    assert resolve_checkpoint("glnet_nano") == tmp_path / "glnet_nano.pth"
    _same_weights(glmix_vis.create_model(checkpoint="glnet_nano"), nano_in1k.state_dict())
    (work / "glnet_nano").rmdir()
    torch.save(_official_layout(nano_in1k), work / "glnet_nano")  # a *file* of that name wins
    assert resolve_checkpoint("glnet_nano") == work.joinpath("glnet_nano").relative_to(work)
    os.remove(tmp_path / "glnet_nano.pth")
    (work / "glnet_nano").unlink()
    (work / "glnet_nano").mkdir()
    with pytest.raises(glmix_vis.CheckpointError, match="is not a file"):
        resolve_checkpoint("glnet_nano")


@pytest.mark.parametrize("name", list(MODEL_CONFIGS))
def test_pool_size_matches_the_cfg_input(name):
    with torch.device("meta"):
        model = timm.create_model(name)
    cfg = model.pretrained_cfg
    with torch.device("meta"):
        feats = model.forward_features(torch.empty(1, *cfg["input_size"]))
    assert tuple(feats.shape[-2:]) == tuple(cfg["pool_size"])


def _trace(model: torch.nn.Module) -> torch.fx.GraphModule:
    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
            return isinstance(m, tuple(get_notrace_modules())) or super().is_leaf_module(m, qualname)

    tracer = Tracer(autowrap_functions=tuple(get_notrace_functions()))
    return torch.fx.GraphModule(model, tracer.trace(model))


@pytest.mark.parametrize("name", ["glnet_nano", "glnet_stl"])
def test_fx_trace_forward_is_bit_identical_and_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=7).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        expected = model(x)
        traced = _trace(model)
        got = traced(x)
    assert torch.equal(got, expected)
    node_targets = {str(n.target) for n in traced.graph.nodes if n.op == "call_module"}
    assert "stages.0.blocks.0" in node_targets  # every block's output is a node
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):  # the input check survives tracing
        traced(torch.randn(3, 64, 64))

    model.train()
    traced = _trace(model)
    traced(torch.randn(2, 3, 64, 64)).mean().backward()
    missing = [n for n, p in traced.named_parameters() if p.grad is None]
    assert not missing


def test_fx_feature_extraction():
    pytest.importorskip("torchvision")
    model = timm.create_model("glnet_nano", features_only=True, feature_cls="fx").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        outs = model(x)
    assert [o.shape[1] for o in outs] == model.feature_info.channels()
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]
