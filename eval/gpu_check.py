"""The GPU check's measurements (run by ``eval/gpu_check.sh``; see there for the whole check).

    python eval/gpu_check.py [--device cuda] [--quick] [--official eval/_official/glnet.py] [--out DIR]

1. **Parity**: the bundled model and a random ``glnet_stl`` (seed 0) in fp32 on ``--device``
   against the CPU: the largest logit difference and the hard-slot agreement of every GLMix block.
2. **Drift**: bf16 and fp16 autocast against fp32 on ``--device``: relative logit change and
   hard-slot agreement per block (what ``--precision`` would change).
3. **Throughput**: images/s of ``glnet_stl`` and ``glnet_4g`` (ours and, with ``--official``, the
   authors' ``glnet.py`` given our weights, checked to give the same logits), ``convnext_tiny`` and
   ``swin_tiny`` at batch 64 (224 px), fp32 and bf16, timed round-robin with the device synchronised.
4. **Eval**: ``glmix-wsss eval`` (single scale, dense CRF with the images' labels) of a random-head
   ``glnet_4g`` over generated VOC-size scenes (375x500), fp32 and bf16: images/s end to end.

``--quick`` shrinks every part (batch 1, one timed round, 4 eval images) so CI can run the whole
path on a CPU (``--device cpu --quick``) and the check cannot go stale; its numbers mean nothing.
Writes ``OUT/gpu_check.json`` and ``OUT/gpu_check.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backbone import BASELINES, load_official, official_twin  # noqa: E402
from bench_eval_throughput import random_checkpoint, voc_size_scenes  # noqa: E402

from glmix_vis import load_model  # noqa: E402
from glmix_vis.devices import PRECISION_DTYPES  # noqa: E402
from glmix_vis.wsss.evaluate import EvalConfig, evaluate  # noqa: E402

PRECISIONS = PRECISION_DTYPES
PEERS = {name: BASELINES[name] for name in ("convnext_tiny", "swin_tiny")}


def _forward(model: nn.Module, x: torch.Tensor, dtype: torch.dtype):
    with torch.no_grad(), torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
        return model.forward_slots(x) if hasattr(model, "forward_slots") else model(x)


def _hard(out) -> list[torch.Tensor]:
    return [m.hard.cpu() for m in out.maps]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parity(device: torch.device, quick: bool) -> dict[str, Any]:
    """fp32 on ``device`` against the CPU, for the bundled model and a random glnet_stl."""
    torch.manual_seed(0)
    x = torch.randn(1 if quick else 4, 3, 224, 224)
    bundled, _ = load_model(None, device="cpu")
    models = {"bundled glnet_nano": bundled.eval(), "glnet_stl (random)": timm.create_model("glnet_stl").eval()}
    rows = {}
    for name, model in models.items():
        ref = _forward(model, x, torch.float32)
        out = _forward(model.to(device), x.to(device), torch.float32)
        model.cpu()
        rows[name] = dict(
            max_abs_logit_diff=float((out.logits.float().cpu() - ref.logits).abs().max()),
            hard_slot_agreement=[float((a == b).float().mean()) for a, b in zip(_hard(out), _hard(ref))])
    return rows


def drift(device: torch.device, quick: bool) -> dict[str, Any]:
    """bf16 and fp16 autocast against fp32 on ``device`` (a random glnet_stl, seed 0)."""
    torch.manual_seed(0)
    x = torch.randn(1 if quick else 8, 3, 224, 224, device=device)
    model = timm.create_model("glnet_stl").eval().to(device)
    ref = _forward(model, x, torch.float32)
    rows = {}
    for name in ("bf16", "fp16"):
        try:
            out = _forward(model, x, PRECISIONS[name])
        except RuntimeError as err:  # a CPU build without fp16 kernels for some op
            rows[name] = dict(error=str(err).splitlines()[0])
            continue
        rel = (out.logits.float() - ref.logits).norm() / ref.logits.norm()
        rows[name] = dict(relative_logit_change=float(rel),
                          hard_slot_agreement=[float((a == b).float().mean()) for a, b in zip(_hard(out), _hard(ref))])
    return rows


def _models(official_path: Path | None) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    models: dict[str, nn.Module] = {}
    official = load_official(official_path) if official_path else None
    for variant in ("glnet_stl", "glnet_4g"):
        ours = timm.create_model(variant).eval()
        models[variant] = ours
        if official is not None:
            theirs = official_twin(official, ours, variant)
            x = torch.randn(1, 3, 224, 224)
            with torch.no_grad():
                torch.testing.assert_close(theirs(x), ours(x), atol=1e-4, rtol=1e-4)
            models[f"authors' {variant}"] = theirs
    for short, name in PEERS.items():
        models[short] = timm.create_model(name).eval()
    return models


def throughput(device: torch.device, quick: bool, official: Path | None, batch: int,
               rounds: int) -> dict[str, Any]:
    """Images/s per model and precision, round-robin over the models so drift hits all alike."""
    models = {k: m.to(device) for k, m in _models(official).items()}
    batch = 1 if quick else batch
    rounds = 1 if quick else rounds
    x = torch.randn(batch, 3, 224, 224, device=device)
    times: dict[tuple[str, str], list[float]] = {}
    for precision in ("fp32", "bf16"):
        dtype = PRECISIONS[precision]
        calls: dict[str, Callable[[], Any]] = {k: (lambda m=m: m(x)) for k, m in models.items()}
        for call in calls.values():  # warm-up (cuDNN autotune, lazy init)
            for _ in range(1 if quick else 3):
                with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                    call()
        _sync(device)
        for r in range(rounds):
            names = list(calls)
            for name in names[r % len(names):] + names[:r % len(names)]:
                _sync(device)
                start = time.perf_counter()
                with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                    for _ in range(1 if quick else 5):
                        calls[name]()
                _sync(device)
                times.setdefault((name, precision), []).append((time.perf_counter() - start) / (1 if quick else 5))
    rows: dict[str, dict[str, float]] = {}
    for (name, precision), t in times.items():
        rows.setdefault(name, {})[precision] = batch / statistics.median(t)
    return dict(batch=batch, size=224, rounds=rounds, images_per_s=rows)


def eval_speed(device: torch.device, quick: bool, work: Path) -> dict[str, Any]:
    """``glmix-wsss eval`` with the CRF over generated VOC-size scenes, fp32 and bf16."""
    images = 4 if quick else 200
    root = voc_size_scenes(work, images)
    checkpoint = random_checkpoint(work, "glnet_4g")
    rows = {}
    for precision in ("fp32", "bf16"):
        out = work / f"eval-{precision}"
        started = time.perf_counter()
        result = evaluate(EvalConfig(root=str(root), split="train", checkpoint=str(checkpoint),
                                     out=str(out), device=device.type, precision=precision, progress=False,
                                     labels="gt"))  # workers and threads: eval's own share of the cores
        wall = time.perf_counter() - started
        t = result["timing"]
        rows[precision] = dict(images=result["images"], images_per_s=result["images"] / wall,
                               forward_s_per_image=t["forward_s_per_image"], crf_s_per_image=t["crf_s_per_image"],
                               crf_workers=t["crf_workers"], miou=result["miou"])
    return dict(model="glnet_4g (random head)", size="375x500", runs=rows)


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [f"# GPU check on {env['device_name']} ({report['device']}{', quick' if report['quick'] else ''})", "",
             f"torch {env['torch']}, timm {env['timm']}, Python {env['python']}", "", "## Parity (fp32, against the CPU)",
             "", "| model | max abs logit diff | hard-slot agreement per block (min / mean) |", "|---|---:|---|"]
    for name, r in report["parity"].items():
        agree = r["hard_slot_agreement"]
        lines.append(f"| {name} | {r['max_abs_logit_diff']:.2e} | {min(agree):.4f} / {statistics.mean(agree):.4f} |")
    lines += ["", "## Reduced precision against fp32 (random glnet_stl)", "",
              "| precision | relative logit change | hard-slot agreement per block |", "|---|---:|---|"]
    for name, r in report["drift"].items():
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | |")
        else:
            lines.append(f"| {name} | {r['relative_logit_change']:.4f} | "
                         f"{', '.join(f'{a:.3f}' for a in r['hard_slot_agreement'])} |")
    tp = report["throughput"]
    lines += ["", f"## Images/s at batch {tp['batch']}, {tp['size']} px ({tp['rounds']} rounds, median)", "",
              "| model | fp32 | bf16 | bf16 speed-up |", "|---|---:|---:|---:|"]
    for name, r in tp["images_per_s"].items():
        lines.append(f"| {name} | {r['fp32']:.1f} | {r['bf16']:.1f} | {r['bf16'] / r['fp32']:.2f}x |")
    ev = report["eval"]
    lines += ["", f"## glmix-wsss eval, {ev['model']}, {ev['size']} scenes, slot-cam + CRF", "",
              "| precision | images | images/s | network s/img | CRF s/img (one worker) | CRF workers |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, r in ev["runs"].items():
        lines.append(f"| {name} | {r['images']} | {r['images_per_s']:.2f} | {r['forward_s_per_image']:.4f} | "
                     f"{r['crf_s_per_image']:.3f} | {r['crf_workers']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the path, not the speed")
    p.add_argument("--official", type=Path, help="the authors' glnet.py (default: eval/_official/glnet.py if present)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("eval/_work/gpu_check"))
    p.add_argument("--work", type=Path, help="scenes and eval runs (default: a temporary folder)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    official = args.official
    if official is None and (Path(__file__).parent / "_official" / "glnet.py").is_file():
        official = Path(__file__).parent / "_official" / "glnet.py"
    if official is not None and not official.is_file():
        print(f"gpu_check: --official {official}: no such file", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    env = dict(torch=torch.__version__, timm=timm.__version__, python=platform.python_version(),
               device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu")
    report: dict[str, Any] = dict(device=str(device), quick=args.quick, environment=env,
                                  official=str(official) if official else None)
    steps = [("parity", lambda: parity(device, args.quick)), ("drift", lambda: drift(device, args.quick)),
             ("throughput", lambda: throughput(device, args.quick, official, args.batch, args.rounds))]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        steps.append(("eval", lambda: eval_speed(device, args.quick, work)))
        for name, step in steps:
            started = time.perf_counter()
            report[name] = step()
            print(f"gpu_check: {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (args.out / "gpu_check.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
