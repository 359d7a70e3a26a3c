"""CPU speed of our GLNet against common backbones of the same size, measured side by side.

Every model of a (size, batch) setting runs on the same input, interleaved round-robin
(A, B, C, B, C, A, ...: the order rotates every round), and the medians are compared, so a
burst of background load hits all models alike and the ratios stay meaningful on a shared
machine. The JSON also keeps every timing, the median of per-round ratios and the ratio of
the fastest runs; when those disagree with the medians, the machine was too busy. ``glnet_stl.forward_slots``
is one more entry of the same rotation; its overhead over ``forward`` is the median of the
per-round ratios.

    python eval/bench_backbone.py --sizes 224,448,896 --batches 1,8 --threads 2 --repeats 15

``--official eval/_official/glnet.py`` adds the authors' implementation (a copy of
rayleizhu/GLMix ``models/glnet.py``; it is never committed here). It gets our weights, and the
script checks that both give the same logits before timing them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import platform
import statistics
import sys
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn

import glmix_vis.models  # noqa: F401  (registers the GLNet family in timm)

OURS = "glnet_stl"
OFFICIAL = "official_glnet_stl"
SLOTS = "glnet_stl.forward_slots"
BASELINES = {
    "swin_tiny": "swin_tiny_patch4_window7_224",
    "convnext_tiny": "convnext_tiny",
    "deit_small": "deit_small_patch16_224",
}


def load_official(path: Path) -> types.ModuleType:
    """Import the authors' ``glnet.py`` without fairscale and without touching timm's registry."""
    if "fairscale" not in sys.modules:
        fairscale = types.ModuleType("fairscale")
        fs_nn = types.ModuleType("fairscale.nn")
        fs_ckpt = types.ModuleType("fairscale.nn.checkpoint")
        fs_ckpt.checkpoint_wrapper = lambda module, **_: module
        sys.modules.update({"fairscale": fairscale, "fairscale.nn": fs_nn, "fairscale.nn.checkpoint": fs_ckpt})
    import timm.models

    register = timm.models.register_model
    timm.models.register_model = lambda fn: fn  # its names clash with ours
    try:
        spec = importlib.util.spec_from_file_location("official_glnet", path)
        module = importlib.util.module_from_spec(spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec.loader.exec_module(module)
    finally:
        timm.models.register_model = register
    return module


def official_twin(official: types.ModuleType, ours: nn.Module, variant: str, **kwargs: Any) -> nn.Module:
    """The authors' ``variant`` from their ``glnet.py`` with ``ours``'s weights, in eval mode."""
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its unused kwargs
        theirs = getattr(official, variant)(**kwargs)
    theirs.load_state_dict(ours.state_dict())
    return theirs.eval()


def build_models(size: int, official: types.ModuleType | None) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    ours = timm.create_model(OURS).eval()
    models: dict[str, nn.Module] = {OURS: ours}
    if official is not None:
        models[OFFICIAL] = official_twin(official, ours, OURS)
    for short, name in BASELINES.items():
        kwargs = {"img_size": size} if short in ("swin_tiny", "deit_small") else {}
        models[short] = timm.create_model(name, **kwargs).eval()
    return models


class BackgroundMeter:
    """CPU time that *other* processes used, from /proc (Linux); ``None`` elsewhere.

    Used to throw away rounds in which another process was busy: with OpenMP threads that
    spin at barriers, one busy neighbour on a 2-core machine can slow a model down several
    times, and no statistic over such rounds is worth keeping.
    """

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.ok = Path("/proc/stat").is_file() and Path("/proc/self/stat").is_file()

    def _busy(self) -> tuple[int, int]:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        mine = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return user + nice + system + irq + softirq + steal, int(mine[11]) + int(mine[12])

    def start(self) -> tuple[int, int] | None:
        return self._busy() if self.ok else None

    def others_cores(self, start: tuple[int, int] | None, seconds: float) -> float | None:
        """Average number of cores other processes kept busy since ``start``."""
        if start is None or seconds <= 0:
            return None
        total, mine = self._busy()
        return max(0, (total - start[0]) - (mine - start[1])) / self.tick / seconds


def time_call(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_setting(size: int, batch: int, repeats: int, warmup: int, official: types.ModuleType | None,
                  slots: bool, max_background: float) -> dict[str, Any]:
    models = build_models(size, official)
    x = torch.randn(batch, 3, size, size)
    calls: dict[str, Callable[[], Any]] = {name: (lambda m=m: m(x)) for name, m in models.items()}
    if slots:
        calls[SLOTS] = lambda: models[OURS].forward_slots(x)
    result: dict[str, Any] = {"size": size, "batch": batch, "repeats": repeats}
    with torch.inference_mode():
        if official is not None:
            diff = (models[OURS](x) - models[OFFICIAL](x)).abs().max().item()
            result["max_abs_logit_diff_vs_official"] = diff
        for _ in range(warmup):
            for fn in calls.values():
                fn()
        times: dict[str, list[float]] = {name: [] for name in calls}
        order = list(calls)
        meter = BackgroundMeter()
        rounds = discarded = 0
        while rounds < repeats and discarded <= 4 * repeats:
            shift = (rounds + discarded) % len(order)  # rotate who goes first
            start, t0 = meter.start(), time.perf_counter()
            round_times = {name: time_call(calls[name]) for name in order[shift:] + order[:shift]}
            busy = meter.others_cores(start, time.perf_counter() - t0)
            if max_background >= 0 and busy is not None and busy > max_background:
                discarded += 1
                continue
            rounds += 1
            for name, t in round_times.items():
                times[name].append(t)
        result["rounds_discarded_for_background_load"] = discarded
        if rounds < repeats:
            result["warning"] = f"only {rounds} of {repeats} rounds were free of background load"
        if rounds == 0:
            raise RuntimeError(f"size {size} batch {batch}: the machine never was quiet enough; "
                               "rerun later or pass --max-background -1")
    result["ms"] = {name: 1000 * statistics.median(t) for name, t in times.items()}
    result["ms_min"] = {name: 1000 * min(t) for name, t in times.items()}
    result["ms_all"] = {name: [round(1000 * v, 2) for v in t] for name, t in times.items()}
    ours = result["ms"][OURS]
    others = [name for name in times if name not in (OURS, SLOTS)]
    result["ratio_ours_over"] = {name: ours / result["ms"][name] for name in others}
    # robustness checks: the median of per-round ratios, and the ratio of the fastest runs
    result["ratio_ours_over_paired"] = {
        name: statistics.median(a / b for a, b in zip(times[OURS], times[name])) for name in others}
    result["ratio_ours_over_min"] = {name: result["ms_min"][OURS] / result["ms_min"][name] for name in others}
    if slots:
        per_round = [s / f for s, f in zip(times[SLOTS], times[OURS])]
        result["forward_slots_overhead"] = statistics.median(per_round) - 1
        result["forward_slots_overhead_of_medians"] = result["ms"][SLOTS] / ours - 1
    return result


def machine_info(threads: int) -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "timm": timm.__version__, "python": platform.python_version(),
            "mkldnn": torch.backends.mkldnn.is_available()}


def markdown(report: dict[str, Any]) -> str:
    names = [OURS] + ([OFFICIAL] if report["official"] else []) + list(BASELINES)
    head = "| size | batch | " + " | ".join(f"{n} ms" for n in names)
    head += " | " + " | ".join(f"ours / {n}" for n in names[1:]) + " | forward_slots overhead |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in report["results"]:
        if "skipped" in r:
            lines.append(f"| {r['size']} | {r['batch']} | skipped: {r['skipped']} |")
            continue
        cells = [f"{r['ms'][n]:.1f}" for n in names] + [f"{r['ratio_ours_over'][n]:.2f}" for n in names[1:]]
        overhead = r.get("forward_slots_overhead")
        cells.append(f"{100 * overhead:+.1f}%" if overhead is not None else "-")
        lines.append(f"| {r['size']} | {r['batch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="224,448,896")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15, help="timed rounds per setting (medians are reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds per setting")
    ap.add_argument("--max-pixels", type=int, default=8 * 448 * 448,
                    help="skip settings with batch * size^2 above this (default: batch 8 at 448)")
    ap.add_argument("--max-background", type=float, default=0.1,
                    help="discard a round when other processes kept more than this many cores busy "
                         "during it (Linux; -1 keeps every round)")
    ap.add_argument("--official", type=Path, default=None, help="path to the authors' models/glnet.py")
    ap.add_argument("--no-slots", action="store_true", help="do not time forward_slots")
    ap.add_argument("--out", type=Path, default=Path("eval/results/backbone.json"))
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    official = load_official(args.official) if args.official else None
    report: dict[str, Any] = {"command": " ".join([Path(sys.argv[0]).as_posix()] + (argv or sys.argv[1:])),
                              "machine": machine_info(args.threads), "official": official is not None,
                              "load_before": os.getloadavg(), "results": []}
    for size in (int(s) for s in args.sizes.split(",")):
        for batch in (int(b) for b in args.batches.split(",")):
            if batch * size * size > args.max_pixels:
                report["results"].append({"size": size, "batch": batch,
                                          "skipped": f"batch*size^2 > --max-pixels={args.max_pixels}"})
                print(f"size {size} batch {batch}: skipped (too slow for this machine)", flush=True)
                continue
            r = bench_setting(size, batch, args.repeats, args.warmup, official, slots=not args.no_slots,
                              max_background=args.max_background)
            report["results"].append(r)
            shown = ", ".join(f"{n} {ms:.1f}" for n, ms in r["ms"].items())
            print(f"size {size} batch {batch}: {shown} ms "
                  f"({r['rounds_discarded_for_background_load']} rounds discarded)", flush=True)
    report["load_after"] = os.getloadavg()
    report["markdown"] = markdown(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(report["markdown"])


if __name__ == "__main__":
    main()
