"""Load time and peak memory for a full official-style training checkpoint (issue 8).

Writes a ``glnet_16g``-sized training checkpoint in the authors' ``save_model`` layout (model,
model_ema, AdamW state with exp_avg/exp_avg_sq, scaler, epoch and a hydra/omegaconf ``args``)
to a temp folder, then measures each loader in a fresh subprocess:

* ``naive``: ``torch.load(weights_only=False)`` (needs omegaconf, runs pickled code), a
  randomly initialised ``timm.create_model``, ``load_state_dict(ckpt["model_ema"])``;
* ``load_checkpoint``: ``timm.create_model`` + :func:`glmix_vis.load_checkpoint` (memory-mapped,
  copies into the existing parameters);
* ``create_model``: :func:`glmix_vis.create_model` (meta-device model, mapped tensors assigned).

The glmix-vis loaders run with ``import omegaconf`` blocked. Peak RSS comes from
``resource.getrusage`` (it counts mapped file pages that were read); "+touch" is the peak after
reading every weight once, i.e. the real footprint of a usable model.

    python eval/bench_checkpoint_load.py [--variant glnet_16g] [--repeat 2] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("naive", "load_checkpoint", "create_model")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def write_checkpoint(path: Path, variant: str) -> None:
    """A training checkpoint as the authors' ``save_model`` writes it."""
    import timm
    import torch
    from omegaconf import OmegaConf, open_dict

    import glmix_vis.models  # noqa: F401  (registers the variants)

    torch.manual_seed(0)
    model = timm.create_model(variant)
    ema = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=0.05)
    for p in model.parameters():
        p.grad = torch.randn_like(p).mul_(1e-3)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    args = OmegaConf.create({
        "batch_size": 128, "epochs": 300, "update_freq": 1, "model": variant, "input_size": 224,
        "drop_path": 0.4, "model_ema": True, "model_ema_decay": 0.9999, "clip_grad": None,
        "weight_decay": 0.05, "lr": None, "blr": 2.5e-4, "min_lr": 1e-5, "warmup_epochs": 5, "opt": "adamw",
        "opt_eps": 1e-8, "opt_betas": None, "aa": "rand-m9-mstd0.5-inc1", "smoothing": 0.1,
        "mixup": 0.8, "cutmix": 1.0, "nb_classes": 1000, "output_dir": "./outputs/glnet_16g",
        "log_dir": "${output_dir}/tf_record_log", "data_path": "./data/in1k", "seed": 0, "use_amp": True,
        "slurm": {"partition": "gpu", "nodes": 4, "ddp_comm_mode": "tcp"}})
    OmegaConf.set_struct(args, True)
    with open_dict(args):
        args.lr = 4e-3
        args._max_accuracy = 84.1
        args._max_accuracy_ema = 84.3
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 299,
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                           "_growth_tracker": 117}, "args": args, "model_ema": ema}, path)


def _evict(path: Path) -> None:
    """Drop the file's clean pages from the page cache (no root needed), for a cold read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def measure(method: str, path: str, variant: str) -> dict[str, float]:
    """Runs inside the child process."""
    if method != "naive":
        sys.modules["omegaconf"] = None  # type: ignore[assignment]  (glmix-vis must not need it)
        sys.modules["hydra"] = None  # type: ignore[assignment]
    import timm
    import torch

    import glmix_vis.models  # registers the GLNet family in timm

    torch.set_num_threads(2)
    base_rss = _rss_mb()
    load_avg = os.getloadavg()[0]
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    if method == "naive":
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        model = timm.create_model(variant)
        model.load_state_dict(ckpt["model_ema"])
        del ckpt
    elif method == "load_checkpoint":
        model = timm.create_model(variant)
        glmix_vis.load_checkpoint(model, path)
    else:
        model = glmix_vis.create_model(checkpoint=path)
    seconds = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    peak_load = _peak_mb()
    with torch.no_grad():
        checksum = float(sum(t.double().sum() for t in model.state_dict().values()))
    return dict(seconds=seconds, cpu_s=cpu, base_rss_mb=base_rss, peak_mb=peak_load, peak_touch_mb=_peak_mb(),
                checksum=checksum, load_avg=load_avg)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="glnet_16g")
    parser.add_argument("--repeat", type=int, default=2, help="runs per method and cache state")
    parser.add_argument("--dir", help="where to write the checkpoint (default: a temp folder, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the generated checkpoint")
    parser.add_argument("--measure", nargs=2, metavar=("METHOD", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], args.measure[1], args.variant)))
        return 0

    folder = Path(args.dir or tempfile.mkdtemp(prefix="glmix-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "checkpoint-299.pth"
    try:
        if not path.exists():
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "import bench_checkpoint_load as b; from pathlib import Path; "
                            "b.write_checkpoint(Path(sys.argv[2]), sys.argv[3])",
                            str(Path(__file__).parent), str(path), args.variant], check=True)
            print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t:.0f} s")
        rows = [_run_once(path, args.variant, method, cache)
                for cache in ("cold", "warm") for method in METHODS for _ in range(args.repeat)]
        sums = {round(r["checksum"], 3) for r in rows}
        print(f"\nfile: {path.stat().st_size / 2**30:.2f} GiB; all loaders agree on the weights: {len(sums) == 1}")
        _print_table(rows)
    finally:
        if not (args.keep or args.dir):
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def _run_once(path: Path, variant: str, method: str, cache: str) -> dict[str, float | str]:
    if cache == "cold":
        _evict(path)
    else:  # read it once so it is in the page cache
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
    out = subprocess.run([sys.executable, __file__, "--variant", variant, "--measure", method, str(path)],
                         check=True, capture_output=True, text=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row.update(method=method, cache=cache)
    print(json.dumps(row), flush=True)
    return row


def _print_table(rows: list[dict]) -> None:
    print("| cache | method | wall s (each run) | CPU s (each run) | peak RSS - RSS before, after load (MiB) |"
          " same, after reading every weight (MiB) | 1-min load avg |")
    print("|---|---|---|---|---|---|---|")
    for cache in ("cold", "warm"):
        for method in METHODS:
            sel = [r for r in rows if r["method"] == method and r["cache"] == cache]
            walls = ", ".join(f"{r['seconds']:.1f}" for r in sel)
            cpus = ", ".join(f"{r['cpu_s']:.1f}" for r in sel)
            load = max(r["peak_mb"] - r["base_rss_mb"] for r in sel)
            touch = max(r["peak_touch_mb"] - r["base_rss_mb"] for r in sel)
            loads = ", ".join(f"{r['load_avg']:.0f}" for r in sel)
            print(f"| {cache} | {method} | {walls} | {cpus} | {load:.0f} | {touch:.0f} | {loads} |")


if __name__ == "__main__":
    raise SystemExit(main())
