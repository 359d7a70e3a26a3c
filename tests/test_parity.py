"""Our GLNet against the authors' implementation: state-dict layout and recorded outputs."""

import json

import pytest
import timm
import torch
from safetensors.torch import load_file

import glmix_vis.models  # noqa: F401  (registers the GLNet family in timm)
from glmix_vis.models import OFFICIAL_VARIANTS

CASES = ["tiny_stl", "tiny_stl_paramslot", "tiny_4g", "tiny_16g", "tiny_4g_tklb"]
TOL = dict(atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", OFFICIAL_VARIANTS)
def test_official_state_dict_layout(name, reference_dir):
    official = json.loads((reference_dir / "official_state_dicts.json").read_text())[name]
    with torch.device("meta"):
        model = timm.create_model(name)
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == official["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == official["num_params"]
    assert model.num_glmix_blocks == official["num_glmix_blocks"]


@pytest.mark.parametrize("case", CASES)
def test_outputs_match_official(case, reference_dir):
    spec = json.loads((reference_dir / f"{case}.json").read_text())
    model = glmix_vis.GLNet(**spec["config"]).eval()
    model.load_state_dict(load_file(reference_dir / f"{case}.weights.safetensors"), strict=True)
    io = load_file(reference_dir / f"{case}.io.safetensors")
    for j, inp in enumerate(spec["inputs"]):
        x = io[f"input{j}"]
        assert list(x.shape) == inp["shape"]
        with torch.no_grad():
            plain_logits = model(x)
            features = model.forward_features(x)
            out = model.forward_slots(x)
        torch.testing.assert_close(features, io[f"input{j}.features"], **TOL)
        torch.testing.assert_close(plain_logits, io[f"input{j}.logits"], **TOL)
        torch.testing.assert_close(out.logits, io[f"input{j}.logits"], **TOL)
        torch.testing.assert_close(out.features, io[f"input{j}.features"], **TOL)
        assert len(out.maps) == inp["num_glmix_blocks"]
        for b, slot_map in enumerate(out.maps):
            assert list(slot_map.logits.shape) == inp["assign_logits_shapes"][b]
            torch.testing.assert_close(slot_map.logits, io[f"input{j}.assign_logits.{b}"], **TOL)
        if spec["config"]["token_labeling"]:
            torch.testing.assert_close(out.cls_logits, io[f"input{j}.cls_logits"], **TOL)
            torch.testing.assert_close(out.token_logits, io[f"input{j}.token_logits"], **TOL)
        else:
            assert out.token_logits is None and out.cls_logits is None
