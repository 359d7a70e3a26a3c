"""``--precision``: the one rule that picks the network's dtype, autocast around the forward passes only,
float32 maps out, and the option on every command that runs the network."""

import json

import numpy as np
import pytest
import torch

from glmix_vis import devices
from glmix_vis.assets import example_images
from glmix_vis.cli.vis import main as vis_main
from glmix_vis.devices import (
    DEFAULT_PRECISION,
    PRECISIONS,
    inference_precision,
    network_autocast,
    precision_name,
    resolve_precision,
)
from glmix_vis.models.slots import run_slots
from glmix_vis.predictor import SlotPredictor

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


# ------------------------------------------------------------------------------ the rule
@pytest.mark.parametrize("flags, expected", [
    ({"fpu", "avx2", "avx512f", "avx512_bf16"}, torch.bfloat16),  # AMD Zen 4, Intel Cooper Lake
    ({"fpu", "avx2", "amx_bf16", "amx_tile"}, torch.bfloat16),  # Intel Sapphire Rapids
    ({"fpu", "avx2", "avx512f", "avx512_vnni"}, torch.float32),  # AVX-512 without bfloat16
    ({"fp", "asimd", "bf16"}, torch.float32),  # an ARM core: fp32 until measured there
])
def test_auto_on_a_cpu_follows_its_bf16_instructions(monkeypatch, flags, expected):
    monkeypatch.setattr(devices.sys, "platform", "linux")
    monkeypatch.setattr(devices, "_cpu_flags", lambda: frozenset(flags))
    assert resolve_precision("auto", CPU) == expected


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(True, False, torch.bfloat16), (False, True, torch.bfloat16),
                                                         (False, False, torch.float32)])
def test_without_proc_cpuinfo_torch_is_asked(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(devices.sys, "platform", "darwin")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert resolve_precision("auto", CPU) == expected


def test_the_real_cpuinfo_is_read():
    flags = devices._cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo here")
    assert devices.cpu_supports_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


@pytest.mark.parametrize("native_bf16, expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_on_a_gpu_is_its_half_type(monkeypatch, native_bf16, expected):
    monkeypatch.setattr(devices, "_cuda_bf16", lambda device: native_bf16)
    assert resolve_precision("auto", CUDA) == expected
    assert devices.autocast_dtype(CUDA) == expected  # training's AMP follows the same rule
    assert resolve_precision("fp16", CUDA) == torch.float16


def test_explicit_choices_and_clear_errors(monkeypatch):
    assert resolve_precision("fp32", CPU) == torch.float32
    assert resolve_precision("bf16", CPU) == torch.bfloat16
    assert resolve_precision("fp16", CPU) == torch.float16  # CPU autocast takes float16 too (slow, but exact to ask)
    assert resolve_precision(torch.bfloat16, CPU) == torch.bfloat16
    assert [precision_name(resolve_precision(p, CPU)) for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]
    assert DEFAULT_PRECISION in PRECISIONS
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        resolve_precision("half", CPU)
    monkeypatch.setattr(devices, "_cuda_bf16", lambda device: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(ValueError, match="V100 has no bfloat16; use fp16 or auto"):
        resolve_precision("bf16", CUDA)
    monkeypatch.setattr(devices, "_autocast_available", lambda device_type: False)
    with pytest.raises(ValueError, match="cannot autocast"):
        resolve_precision("bf16", CPU)
    assert resolve_precision("fp32", CPU) == torch.float32  # fp32 needs no autocast


def test_autocast_wraps_forward_passes_only_inside_a_precision_block():
    with network_autocast(CPU):
        assert not torch.is_autocast_enabled("cpu")  # float32: no autocast at all
    with inference_precision(torch.bfloat16):
        assert not torch.is_autocast_enabled("cpu")  # the block sets the choice; the forward applies it
        with network_autocast(CPU):
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert devices.network_precision() == torch.float32


# ------------------------------------------------------------------------------ on the bundled model
@pytest.fixture(scope="module")
def predictors():
    fp32 = SlotPredictor.from_checkpoint(device="cpu", precision="fp32")
    return fp32, SlotPredictor(fp32.model, fp32.info, device="cpu", precision="bf16")


def test_slot_maps_and_evidence_are_float32_under_bf16(predictors):
    _, bf16 = predictors
    out = bf16.set_image(next(iter(example_images().values())))
    assert bf16.precision == torch.bfloat16
    tensors = [out.logits, out.features] + [t for m in out.maps for t in (m.logits, m.slots, m.dispatch, m.upsample())]
    assert all(t.dtype == torch.float32 for t in tensors)
    assert bf16.evidence("slot-cam").dtype == np.float32
    assert next(bf16.model.parameters()).dtype == torch.float32  # weights untouched: autocast


def test_fp32_is_the_plain_forward_pass_bit_for_bit(predictors):
    fp32, _ = predictors
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        plain = fp32.model.forward_slots(x)
    with inference_precision(torch.float32):
        ours = run_slots(fp32.model, x)
    assert torch.equal(plain.logits, ours.logits)
    assert all(torch.equal(a.logits, b.logits) for a, b in zip(plain.maps, ours.maps))


def test_bf16_evidence_and_masks_stay_close_to_fp32(predictors):
    fp32, bf16 = predictors
    for path in list(example_images().values())[:2]:
        fp32.set_image(path)
        bf16.set_image(path)
        assert not torch.equal(fp32.output.logits, bf16.output.logits)  # it did run in bfloat16
        for method in ("cam", "slot-cam"):
            a, b = fp32.evidence(method), bf16.evidence(method)
            # slot-CAM stretches each class's slot scores over the image's slots (min-max), so a bf16
            # rounding of one small slot's score can move its few pixels by ~0.13 (torch 2.14, measured);
            # the bulk stays within 0.01 and the masks agree
            d = np.abs(a - b)
            assert np.quantile(d, 0.999) < 0.15 and d.max() < 0.25 and d.mean() < 0.01, method
            assert (fp32.pseudo_mask(method) == bf16.pseudo_mask(method)).mean() > 0.99, method


# ------------------------------------------------------------------------------ the commands
def test_slots_records_the_resolved_precision(capsys):
    assert vis_main(["slots", "--device", "cpu", "--precision", "bf16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "bf16"
    assert vis_main(["slots", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == DEFAULT_PRECISION
    with pytest.raises(SystemExit) as exit_:
        vis_main(["slots", "--precision", "fp64"])
    assert exit_.value.code == 2 and "--precision" in capsys.readouterr().err


def test_figure_and_app_take_precision(monkeypatch, tmp_path):
    import glmix_vis.predictor as predictor_module

    seen = {}

    def fake(cls, checkpoint=None, *, device="auto", precision=DEFAULT_PRECISION):
        seen.update(device=device, precision=precision)
        raise SystemExit(0)

    monkeypatch.setattr(predictor_module.SlotPredictor, "from_checkpoint", classmethod(fake))
    image = next(iter(example_images().values()))
    with pytest.raises(SystemExit):
        vis_main(["figure", str(image), "--out", str(tmp_path / "f.png"), "--device", "cpu", "--precision", "bf16"])
    assert seen == {"device": "cpu", "precision": "bf16"}

    import argparse

    from glmix_vis.cli.app_cmd import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--precision", "auto"]).precision == "auto"
    assert parser.parse_args([]).precision == DEFAULT_PRECISION


def test_the_app_loads_its_models_at_the_chosen_precision(nano_checkpoint, monkeypatch, tmp_path):
    pytest.importorskip("gradio")
    from glmix_vis.app import SlotApp

    monkeypatch.setenv("GLMIX_CHECKPOINT_DIR", str(tmp_path))
    app = SlotApp(nano_checkpoint, max_side=128, device="cpu", precision="bf16")
    label = app.default_label
    assert app.model(label).info.precision == torch.bfloat16
    analysis = app.forward(np.zeros((64, 64, 3), np.uint8), label)
    assert analysis.predictor.precision == torch.bfloat16
    assert analysis.predictor.output.maps[0].logits.dtype == torch.float32
