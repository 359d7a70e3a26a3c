"""Checkpoint files: formats, EMA choice, safe unpickling, variant detection, create_model, CLI."""

from __future__ import annotations

import argparse
import builtins
import functools
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import timm
import torch

import glmix_vis.models  # noqa: F401  (registers the GLNet family in timm)
from glmix_vis.cli._dispatch import main as dispatch_main
from glmix_vis.models.checkpoints import (
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    read_checkpoint,
    read_checkpoint_meta,
    resolve_checkpoint,
    save_safetensors,
)
from glmix_vis.models.factory import create_model
from glmix_vis.models.glnet import OFFICIAL_VARIANTS
from glmix_vis.models.variants import detect_variant

NUM_CLASSES = 4


def _cli(argv: list[str]) -> int:
    return dispatch_main("glmix-vis", "", {"checkpoint": "glmix_vis.cli.checkpoint_cmd"}, argv)


@pytest.fixture(scope="module")
def nano() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("glnet_nano", num_classes=NUM_CLASSES).eval()


def _plus_one(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v + 1 if v.is_floating_point() else v.clone() for k, v in sd.items()}


def _assert_weights(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert torch.equal(got[k], v), k


def _training_checkpoint(model: torch.nn.Module, args: object, with_ema: bool = True) -> dict:
    """The layout of the authors' ``save_model``: model, optimizer, epoch, scaler, args, model_ema."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e-3)
    opt.step()
    model.load_state_dict(sd)  # undo the step: the module fixture stays as it was
    ckpt = {"model": sd, "optimizer": opt.state_dict(), "epoch": 299,
            "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 11}, "args": args}
    if with_ema:
        ckpt["model_ema"] = _plus_one(sd)
    return ckpt


def _hydra_args() -> object:
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({
        "model": "glnet_nano", "input_size": 160, "drop_path": 0.1, "lr": None, "blr": 2.5e-4, "epochs": 300,
        "output_dir": "./outputs/run", "log_dir": "${output_dir}/tf_record_log", "clip_grad": None,
        "model_ema": True, "slurm": {"partition": "gpu", "ports": [1, 2.5, "x"]}})
    omegaconf.OmegaConf.set_struct(cfg, True)  # as hydra hands it to the task
    with omegaconf.open_dict(cfg):
        cfg.lr = 4e-3
        cfg._max_accuracy = 81.25
    return cfg


# ------------------------------------------------------------------------------ formats
def test_official_pth_ema_choice(tmp_path, nano):
    path = tmp_path / "checkpoint-299.pth"
    ckpt = _training_checkpoint(nano, argparse.Namespace(model="glnet_nano"))
    torch.save(ckpt, path)
    fresh = timm.create_model("glnet_nano", num_classes=NUM_CLASSES)
    report = load_checkpoint(fresh, path)
    assert report.entry == "model" and not report.ema and report.epoch == 299
    _assert_weights(fresh, ckpt["model"])
    assert load_checkpoint(fresh, path, ema=True).entry == "model_ema"
    _assert_weights(fresh, ckpt["model_ema"])
    assert load_checkpoint(fresh, path, ema=False).entry == "model"
    _assert_weights(fresh, ckpt["model"])
    # the authors advise the EMA weights for glnet_16g only
    opened = read_checkpoint(path)
    assert opened.select(None, "glnet_16g")[0] == "model_ema"
    assert opened.select(None, "glnet_4g")[0] == "model"

    only_ema = tmp_path / "ema_only.pth"
    torch.save({"model_ema": ckpt["model_ema"]}, only_ema)
    assert load_checkpoint(fresh, only_ema).entry == "model_ema"
    with pytest.raises(CheckpointError, match="only EMA"):
        load_checkpoint(fresh, only_ema, ema=False)
    no_ema = tmp_path / "no_ema.pth"
    torch.save({"model": ckpt["model"]}, no_ema)
    with pytest.raises(CheckpointError, match=r"no_ema\.pth has no EMA weights"):
        load_checkpoint(fresh, no_ema, ema=True)


@pytest.mark.parametrize("layout", ["plain", "state_dict", "ddp", "ddp_model"])
def test_state_dict_layouts(tmp_path, nano, layout):
    sd = nano.state_dict()
    ddp = {f"module.{k}": v for k, v in sd.items()}
    obj = {"plain": sd, "state_dict": {"state_dict": sd}, "ddp": ddp, "ddp_model": {"model": ddp}}[layout]
    path = tmp_path / f"{layout}.pth"
    torch.save(obj, path)
    fresh = timm.create_model("glnet_nano", num_classes=NUM_CLASSES)
    load_checkpoint(fresh, path)
    _assert_weights(fresh, sd)


def test_safetensors_with_metadata(tmp_path, nano):
    path = tmp_path / "nano.safetensors"
    meta = {"model": "glnet_nano", "classes": ["a", "b", "c", "d"], "input_size": [96, 128],
            "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "note": "123"}
    half = {k: v.half() if v.is_floating_point() else v for k, v in nano.state_dict().items()}
    save_safetensors(half, path, meta=meta)
    assert sorted(os.listdir(tmp_path)) == ["nano.safetensors"]  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would create it, not owner-only
    path.chmod(0o640)
    save_safetensors(half, path, meta=meta)
    assert path.stat().st_mode & 0o777 == 0o640  # a rewrite keeps the file's permissions
    assert read_checkpoint_meta(path) == meta  # strings stay strings ("123")
    fresh = timm.create_model("glnet_nano", num_classes=NUM_CLASSES)
    report = load_checkpoint(fresh, path)
    assert report.format == "safetensors" and report.meta["model"] == "glnet_nano"
    assert all(v.dtype == torch.float32 for v in read_checkpoint(path).weights["(top level)"].values()
               if v.is_floating_point())
    model = create_model(checkpoint=path)
    assert model.pretrained_cfg["label_names"] == ("a", "b", "c", "d")
    assert model.pretrained_cfg["input_size"] == (3, 96, 128)
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)


def test_training_meta_with_background_class(tmp_path, nano):
    """Our WSSS training lists the background first; the head predicts the foreground classes."""
    path = tmp_path / "checkpoint-epoch001.pth"
    meta = {"model": "glnet_nano", "classes": ["background", "a", "b", "c", "d"], "num_classes": NUM_CLASSES,
            "head": "foreground", "input_size": [160, 160]}
    torch.save({"model": nano.state_dict(), "meta": meta, "config": {"lr": 0.002}, "epoch": 1}, path)
    model = create_model(checkpoint=path)
    assert model.pretrained_cfg["label_names"] == ("a", "b", "c", "d")
    assert model.checkpoint_report.config == {"lr": 0.002}


# ------------------------------------------------------------------------------ clear errors
def test_wrong_weights_name_the_keys(tmp_path, nano):
    micro = tmp_path / "micro.pth"
    torch.save(timm.create_model("glnet_micro", num_classes=NUM_CLASSES).state_dict(), micro)
    fresh = timm.create_model("glnet_nano", num_classes=NUM_CLASSES)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(fresh, micro)
    text = str(err.value)
    assert "micro.pth" in text and "wrong shape(s)" in text and "in file vs" in text
    assert "unexpected key(s)" in text and "more" in text  # long lists are cut

    sd = dict(nano.state_dict())
    dropped = "stages.2.blocks.1.mlp.0.weight"
    sd.pop(dropped)
    sd["extra.weight"] = torch.zeros(3)
    broken = tmp_path / "broken.pth"
    torch.save({"model": sd}, broken)
    with pytest.raises(CheckpointError, match=rf"broken\.pth \[model\].*1 missing key\(s\): {dropped}.*extra\.weight"):
        load_checkpoint(fresh, broken)
    report = load_checkpoint(fresh, broken, strict=False)
    assert report.missing_keys == [dropped] and report.unexpected_keys == ["extra.weight"]

    head = tmp_path / "head10.pth"
    torch.save(timm.create_model("glnet_nano", num_classes=10).state_dict(), head)
    with pytest.raises(CheckpointError, match=r"head\.weight \(10, 256\) in file vs \(4, 256\) in model"):
        load_checkpoint(fresh, head)
    assert load_checkpoint(fresh, head, strict=False).mismatched_keys == ["head.weight", "head.bias"]


@pytest.mark.parametrize("kind", ["truncated", "random", "text", "empty", "bad_safetensors", "zip"])
def test_unreadable_files(tmp_path, nano, kind):
    good = tmp_path / "good.pth"
    torch.save({"model": nano.state_dict()}, good)
    path = tmp_path / f"{kind}.pth"
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        expected = "truncated or corrupt"
    elif kind == "random":
        path.write_bytes(bytes(range(7, 256)) * 4)
        expected = "not a checkpoint"
    elif kind == "text":
        path.write_text("model: glnet_nano\nlr: 0.1\n")
        expected = "text file"
    elif kind == "empty":
        path.write_bytes(b"")
        expected = "empty"
    elif kind == "zip":
        import zipfile

        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("readme.txt", "hello")
        expected = "not a PyTorch checkpoint"
    else:
        st = tmp_path / "good.safetensors"
        save_safetensors(nano.state_dict(), st)
        path = tmp_path / "bad.safetensors"
        path.write_bytes(st.read_bytes()[:-1000])
        expected = "truncated or corrupt"
    with pytest.raises(CheckpointError, match=expected) as err:
        load_checkpoint(timm.create_model("glnet_nano", num_classes=NUM_CLASSES), path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, ValueError)
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "absent.pth")


# ------------------------------------------------------------------------------ pickled configs
_NO_OMEGACONF = textwrap.dedent("""
    import json, sys
    sys.modules["omegaconf"] = None  # import omegaconf now fails
    sys.modules["hydra"] = None
    import timm
    from glmix_vis.models.checkpoints import load_checkpoint, read_checkpoint
    path = sys.argv[1]
    ckpt = read_checkpoint(path)
    model = timm.create_model("glnet_nano", num_classes=4)
    report = load_checkpoint(model, path, ema=True)
    try:
        import omegaconf  # noqa: F401
        blocked = False
    except ImportError:
        blocked = True
    print(json.dumps(dict(config=ckpt.config, meta=ckpt.meta, epoch=ckpt.epoch, entry=report.entry,
                          entries=list(ckpt.entries), blocked=blocked,
                          checksum=float(sum(p.double().sum() for p in model.state_dict().values())))))
""")


def test_omegaconf_args_load_without_omegaconf(tmp_path, nano):
    path = tmp_path / "checkpoint-299.pth"
    ckpt = _training_checkpoint(nano, _hydra_args())
    torch.save(ckpt, path)
    with pytest.raises(Exception, match="DictConfig"):  # what plain weights-only loading says
        torch.load(path, weights_only=True)
    out = subprocess.run([sys.executable, "-c", _NO_OMEGACONF, str(path)], capture_output=True, text=True,
                         timeout=600)  # seconds when idle; generous for a loaded CI machine
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["blocked"] is True
    cfg = got["config"]
    assert cfg["model"] == "glnet_nano" and cfg["input_size"] == 160 and cfg["drop_path"] == 0.1
    assert cfg["lr"] == 4e-3 and cfg["epochs"] == 300 and cfg["clip_grad"] is None and cfg["model_ema"] is True
    assert cfg["log_dir"] == "./outputs/run/tf_record_log"  # ${output_dir} resolved
    assert cfg["slurm"] == {"partition": "gpu", "ports": [1, 2.5, "x"]} and cfg["_max_accuracy"] == 81.25
    assert got["meta"] == {"model": "glnet_nano", "input_size": [160, 160]}
    assert got["epoch"] == 299 and got["entry"] == "model_ema"
    assert got["entries"] == ["model", "optimizer", "epoch", "scaler", "args", "model_ema"]
    expected = float(sum(v.double().sum() for v in ckpt["model_ema"].values()))
    assert got["checksum"] == pytest.approx(expected, rel=1e-9)


def test_namespace_args_with_numpy_and_paths(tmp_path, nano):
    np = pytest.importorskip("numpy")
    args = argparse.Namespace(model="glnet_nano", input_size=np.int64(224), lr=np.float64(5e-4),
                              drop_path=np.float32(0.25), amp=np.bool_(True), output_dir=pathlib.PosixPath("/runs/a"),
                              windows=pathlib.PureWindowsPath("C:/data"), betas=np.array([0.9, 0.999]),
                              grid=np.array([[1, 2], [3, 4]], dtype=np.int16), name=np.str_("x"))
    path = tmp_path / "ns.pth"
    torch.save(_training_checkpoint(nano, args, with_ema=False), path)
    cfg = read_checkpoint(path).config
    assert cfg["model"] == "glnet_nano" and cfg["input_size"] == 224 and cfg["lr"] == 5e-4
    assert cfg["drop_path"] == 0.25 and cfg["amp"] is True and cfg["name"] == "x"
    assert cfg["output_dir"] == "/runs/a" and cfg["windows"] == "C:\\data"
    assert cfg["betas"] == [0.9, 0.999] and cfg["grid"] == [[1, 2], [3, 4]]


def test_shared_config_objects_are_bounded(tmp_path, nano):
    """A pickle can share sub-objects so that expanding them would never finish."""
    bomb: list = []
    for _ in range(60):
        bomb = [bomb, bomb]
    path = tmp_path / "bomb.pth"
    torch.save({"model": nano.state_dict(), "args": {"x": bomb, "s": "${a}" * 50, "a": "${s}"}}, path)
    with pytest.raises(CheckpointError, match="configuration too large"):
        read_checkpoint(path)


def _system(marker):
    class Hidden:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)
    return Hidden()


def _partial_exec(marker):
    class Hidden:
        def __reduce__(self):
            return functools.partial(builtins.exec, f"open({str(marker)!r}, 'w').close()"), ()
    return Hidden()


def _eval(marker):
    class Hidden:
        def __reduce__(self):
            return builtins.eval, (f"open({str(marker)!r}, 'w')",)
    return Hidden()


@pytest.mark.parametrize("attack,names", [(_system, ["posix.system", "nt.system"]),
                                          (_partial_exec, ["functools.partial", "builtins.exec"]),
                                          (_eval, ["builtins.eval"])])
@pytest.mark.parametrize("zip_format", [True, False])
def test_code_in_args_is_refused(tmp_path, nano, attack, names, zip_format):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"model": nano.state_dict(), "args": argparse.Namespace(lr=0.1, hook=attack(marker))}, path,
               _use_new_zipfile_serialization=zip_format)
    fresh = timm.create_model("glnet_nano", num_classes=NUM_CLASSES)
    with pytest.raises(CheckpointError, match="refusing to load") as err:
        load_checkpoint(fresh, path)
    assert str(path) in str(err.value)
    assert any(n in str(err.value) for n in names)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        create_model(checkpoint=path)
    assert not marker.exists()


# ------------------------------------------------------------------------------ detection
@pytest.fixture(scope="module")
def official_layouts(reference_dir):
    return json.loads((reference_dir / "official_state_dicts.json").read_text())


@pytest.mark.parametrize("variant", OFFICIAL_VARIANTS)
def test_detect_official_variants(official_layouts, variant):
    sd = {k: torch.empty(shape, device="meta") for k, shape in official_layouts[variant]["state_dict"]}
    det = detect_variant(sd)
    assert det.name == variant and det.exact and det.score == 1.0 and det.num_classes == 1000
    # a fine-tuned head with another class count still fits; DDP prefixes are ignored
    tuned = {f"module.{k}": (torch.empty((21, *v.shape[1:]), device="meta") if k.startswith(("head.", "tklb_aux"))
                             else v) for k, v in sd.items()}
    det = detect_variant(tuned)
    assert det.name == variant and det.num_classes == 21


def test_detect_ours_and_closest(nano):
    sd = dict(nano.state_dict())
    det = detect_variant(sd)
    assert det.name == "glnet_nano" and det.num_classes == NUM_CLASSES
    sd.pop("norm.weight")
    sd["stages.0.blocks.0.extra"] = torch.zeros(1)
    sd["downsample_layers.1.1.weight"] = torch.zeros(9, 9, 3, 3)
    with pytest.raises(CheckpointError) as err:
        detect_variant(sd)
    text = str(err.value)
    assert "closest is glnet_nano" in text and "norm.weight" in text and "stages.0.blocks.0.extra" in text
    assert "downsample_layers.1.1.weight (9, 9, 3, 3) in file" in text
    loose = detect_variant(sd, require_exact=False)
    assert loose.name == "glnet_nano" and 0.9 < loose.score < 1.0 and not loose.exact


# ------------------------------------------------------------------------------ create_model
def test_create_model_from_checkpoint(tmp_path, nano):
    path = tmp_path / "plain.pth"
    torch.save(nano.state_dict(), path)
    model = create_model(checkpoint=path)  # name and classes from the weights
    assert not model.training and model.checkpoint_report.variant == "glnet_nano"
    assert model.num_classes == NUM_CLASSES and model.checkpoint_report.assigned
    _assert_weights(model, nano.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), nano(x), atol=1e-6)

    seven = create_model("glnet_nano", checkpoint=path, num_classes=7)
    assert seven.checkpoint_report.reset_heads == ["head"] and seven.head.out_features == 7
    backbone = {k: v for k, v in nano.state_dict().items() if not k.startswith("head.")}
    got = seven.state_dict()
    assert all(torch.equal(got[k], v) for k, v in backbone.items())
    with torch.no_grad():
        assert seven(x).shape == (1, 7)
        assert torch.allclose(seven.forward_features(x), nano.forward_features(x), atol=1e-6)

    with pytest.raises(CheckpointError, match="does not fit"):
        create_model("glnet_micro", checkpoint=path)
    with pytest.raises(ValueError, match="unknown model"):
        create_model("resnet50", checkpoint=path)


def test_checkpoint_dir_lookup(tmp_path, monkeypatch, nano):
    monkeypatch.setenv("GLMIX_CHECKPOINT_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        find_checkpoint("glnet_nano")
    assert str(tmp_path / "glnet_nano.safetensors") in str(err.value) and "glnet_nano.pth" in str(err.value)
    torch.save({"model": nano.state_dict(), "model_ema": _plus_one(nano.state_dict())}, tmp_path / "glnet_nano.pth")
    assert find_checkpoint("glnet_nano") == tmp_path / "glnet_nano.pth"
    assert resolve_checkpoint("glnet_nano") == tmp_path / "glnet_nano.pth"
    assert resolve_checkpoint(tmp_path / "glnet_nano.pth") == tmp_path / "glnet_nano.pth"
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        resolve_checkpoint(tmp_path / "other.pth")

    pretrained = timm.create_model("glnet_nano", pretrained=True, num_classes=NUM_CLASSES)
    _assert_weights(pretrained, nano.state_dict())
    assert create_model("glnet_nano", pretrained=True).num_classes == NUM_CLASSES
    save_safetensors(_plus_one(nano.state_dict()), tmp_path / "glnet_nano.safetensors", meta={"model": "glnet_nano"})
    assert find_checkpoint("glnet_nano") == tmp_path / "glnet_nano.safetensors"  # safetensors first
    _assert_weights(glmix_vis.create_model(checkpoint="glnet_nano"), _plus_one(nano.state_dict()))


# ------------------------------------------------------------------------------ CLI
def test_convert_round_trip(tmp_path, nano):
    src = tmp_path / "checkpoint-299.pth"
    ckpt = _training_checkpoint(nano, argparse.Namespace(model="glnet_nano", input_size=160, drop_path=0.1, lr=4e-3))
    torch.save(ckpt, src)
    out = tmp_path / "nano.safetensors"
    assert _cli(["checkpoint", "convert", str(src), str(out), "--ema"]) == 0
    meta = read_checkpoint_meta(out)
    assert meta["model"] == "glnet_nano" and meta["num_classes"] == NUM_CLASSES and meta["weights"] == "model_ema"
    assert meta["input_size"] == [160, 160] and meta["mean"] == [0.485, 0.456, 0.406] and meta["epoch"] == 299
    converted = create_model(checkpoint=out)
    _assert_weights(converted, ckpt["model_ema"])
    original = timm.create_model("glnet_nano", num_classes=NUM_CLASSES).eval()
    load_checkpoint(original, src, ema=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(converted(x), original(x))
    assert out.stat().st_size < src.stat().st_size / 3  # no optimizer state, no second copy

    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\nbird\nfish\n")
    assert _cli(["checkpoint", "convert", str(src), str(out), "--no-ema", "--classes", str(classes),
                 "--input-size", "96", "128"]) == 2  # exists: needs --force
    assert _cli(["checkpoint", "convert", str(src), str(out), "--no-ema", "--classes", str(classes),
                 "--input-size", "96", "128", "--force"]) == 0
    meta = read_checkpoint_meta(out)
    assert meta["classes"] == ["cat", "dog", "bird", "fish"] and meta["input_size"] == [96, 128]
    assert meta["weights"] == "model"
    assert _cli(["checkpoint", "convert", str(src), str(tmp_path / "x.pth")]) == 2


def test_cli_inspect(tmp_path, nano, capsys):
    src = tmp_path / "checkpoint-299.pth"
    torch.save(_training_checkpoint(nano, _hydra_args()), src)
    assert _cli(["checkpoint", "inspect", str(src)]) == 0
    text = capsys.readouterr().out
    for expected in ("glnet_nano (exact fit)", "epoch       299", "EMA         yes (model_ema",
                     f"classes     {NUM_CLASSES}", "parameters  1,", "model=glnet_nano", "input_size=160",
                     "drop_path=0.1", "lr=0.004", "model_ema (state dict"):
        assert expected in text, expected
    assert _cli(["checkpoint", "inspect", str(src), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["variant"] == "glnet_nano" and info["ema"] and info["config"]["epochs"] == 300

    bad = tmp_path / "notes.txt"
    bad.write_text("not weights")
    assert _cli(["checkpoint", "inspect", str(bad)]) == 2
    assert "notes.txt is a text file" in capsys.readouterr().err


def test_cli_inspect_tells_the_class_rule(tmp_path, capsys):
    """``inspect`` says what loading makes of a head: an ImageNet head is read as VOC; names that do
    not fit the head are shown as the error loading would raise."""
    official = tmp_path / "in1k.safetensors"
    save_safetensors(timm.create_model("glnet_nano", num_classes=1000).state_dict(), official)
    assert _cli(["checkpoint", "inspect", str(official)]) == 0
    assert "classes     1000 (ImageNet-1k; read as the PASCAL VOC classes" in capsys.readouterr().out
    trained = tmp_path / "trained.safetensors"
    save_safetensors(timm.create_model("glnet_nano", num_classes=3).state_dict(), trained,
                     meta={"classes": ["a", "b"], "head": "all"})
    assert _cli(["checkpoint", "inspect", str(trained)]) == 0
    assert "classes     3 (its metadata lists 2 class names (all outputs) but the head has 3" in capsys.readouterr().out


def test_checkpoint_command_is_registered():
    from glmix_vis.cli.vis import COMMANDS

    assert COMMANDS["checkpoint"] == "glmix_vis.cli.checkpoint_cmd"
