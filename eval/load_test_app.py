"""Load test of the web app (issue 6): concurrent gradio_client users against the served app.

Starts ``glmix-vis app`` in a subprocess on loopback (so its memory is measured alone), then
``--clients`` threads each send ``--requests`` uploads to ``/analyze``, cycling through the
example photos and generated scenes, different block choices, and (every ``--corrupt-every``-th
request) a corrupt file. An answer is correct when

* a good image gets one overlay per requested block, of the downscaled image's size, whose
  pixels match the overlays the same callback computes in this process (decoded JPEGs; at
  most ``--max-diff`` of the pixels may differ by more than a few levels); and
* a corrupt file gets the error message (no overlays, no failed request).

The server's RSS is sampled every 50 ms: before any request (model not yet loaded), after
one warm-up request, after every round, and the peak. Several rounds show whether memory keeps
growing (it should not: models, results and figures live in bounded caches).

    python eval/load_test_app.py [--checkpoint CKPT] [--clients 8] [--requests 10] [--rounds 2]
                                 [--concurrency 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from served_app import BLOCK_CHOICES, free_port, rss_mb, run_round, wait_for


class RssSampler(threading.Thread):
    """Samples a process's resident memory until stopped; keeps the peak."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.peak = pid, every, 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:
                return
            time.sleep(self.every)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class Case:
    """One request: an upload, the blocks asked for, and what must come back."""

    path: Path
    blocks: list[int]
    expected: list[np.ndarray] | None  # None: the upload is corrupt, an error message is expected


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    correct: int = 0
    wrong: list[str] = field(default_factory=list)


def _decode_jpeg(image: np.ndarray) -> np.ndarray:
    """What a gallery picture looks like after the app's JPEG encoding."""
    from io import BytesIO

    from glmix_vis.app import encode_jpeg

    return np.asarray(Image.open(BytesIO(encode_jpeg(image))).convert("RGB"))


def make_cases(app: Any, label: str, folder: Path) -> list[Case]:
    """Uploads (photos and generated scenes, PNG and JPEG) with their expected overlays."""
    from glmix_vis.app import example_files

    cases = []
    n = len(app.model(label).block_names)
    choices = [[b for b in c if b < n] or [n - 1] for c in BLOCK_CHOICES]
    for i, (name, source) in enumerate(example_files().items()):
        with Image.open(source) as im:
            rgb = im.convert("RGB")
        path = folder / f"{name}{'.png' if i % 2 else '.jpg'}"
        rgb.save(path)
        blocks = choices[i % len(choices)]
        _, items = app.slot_overlays(str(path), label, None, blocks)
        cases.append(Case(path, blocks, [_decode_jpeg(pic) for pic, _ in items]))
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10)
    cases.append(Case(corrupt, choices[0], None))
    return cases


def check(case: Case, status: str, gallery: list[dict], max_diff: float) -> str | None:
    """None when the answer is right, else what is wrong."""
    if case.expected is None:
        if status.startswith("**Error:**") and "corrupt.jpg" in status and not gallery:
            return None
        return f"{case.path.name}: expected an error message, got {status!r} and {len(gallery)} images"
    if status.startswith("**Error"):
        return f"{case.path.name}: {status}"
    if len(gallery) != len(case.expected):
        return f"{case.path.name}: {len(gallery)} overlays for {len(case.expected)} blocks"
    for item, want in zip(gallery, case.expected):
        got = np.asarray(Image.open(item["image"]).convert("RGB"))
        if got.shape != want.shape:
            return f"{case.path.name}: overlay of shape {got.shape}, expected {want.shape}"
        differ = float((np.abs(got.astype(int) - want.astype(int)).max(-1) > 8).mean())
        if differ > max_diff:
            return f"{case.path.name}: {differ:.2%} of the overlay pixels differ from the reference"
    return None


def client_worker(url: str, label: str, input_size: int, cases: list[Case], start: int, requests: int,
                  max_diff: float, out: Outcome, lock: threading.Lock) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, httpx_kwargs={"timeout": 600})  # queued requests may wait long
    for r in range(requests):
        case = cases[(start + r) % len(cases)]
        t0 = time.perf_counter()
        try:
            status, gallery, *_ = client.predict(handle_file(str(case.path)), label, input_size, case.blocks,
                                                 case.blocks[-1], api_name="/analyze")
            problem = check(case, status, gallery, max_diff)
        except Exception as exc:  # a failed request is a wrong answer, reported below
            problem = f"{case.path.name}: request failed: {type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - t0
        with lock:
            out.latencies.append(elapsed)
            if problem is None:
                out.correct += 1
            else:
                out.wrong.append(problem)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint file (default: the bundled demo model)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10, help="requests per client and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="the server's --concurrency")
    parser.add_argument("--corrupt-every", type=int, default=10, help="every n-th request uploads a corrupt file")
    parser.add_argument("--max-diff", type=float, default=0.001, help="fraction of overlay pixels allowed to differ")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    from glmix_vis.app import SlotApp

    app = SlotApp(args.checkpoint, device="cpu")
    label = app.default_label
    input_size = app.model(label).info.input_size
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "glmix_vis.cli.vis", "app", "--port", str(port), "--device", "cpu",
           "--concurrency", str(args.concurrency)] + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
    print("server:", " ".join(cmd[1:]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        good = make_cases(app, label, folder)
        corrupt = good.pop()
        log = open(folder / "server.log", "w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
        try:
            wait_for(url, proc)
            rss = {"idle": rss_mb(proc.pid)}
            sampler = RssSampler(proc.pid)
            sampler.start()
            from gradio_client import Client, handle_file

            Client(url, verbose=False).predict(handle_file(str(good[0].path)), label, input_size, good[0].blocks,
                                               good[0].blocks[-1], api_name="/analyze")
            rss["warm"] = rss_mb(proc.pid)
            # every corrupt_every-th request (per client) is the corrupt upload
            schedule = [corrupt if (r + 1) % args.corrupt_every == 0 else good[r % len(good)]
                        for r in range(args.requests)]
            total = Outcome()
            rounds = []
            for rnd in range(args.rounds):
                out, lock = Outcome(), threading.Lock()
                wall = run_round(client_worker, [(url, label, input_size, schedule, c, args.requests, args.max_diff,
                                                  out, lock) for c in range(args.clients)])
                rss[f"after_round_{rnd + 1}"] = rss_mb(proc.pid)
                lat = sorted(out.latencies)
                rounds.append(dict(requests=len(lat), correct=out.correct, wall_s=round(wall, 2),
                                   throughput_rps=round(len(lat) / wall, 2),
                                   latency_s=dict(p50=round(statistics.median(lat), 3),
                                                  p90=round(lat[int(0.9 * (len(lat) - 1))], 3),
                                                  max=round(lat[-1], 3))))
                print(f"round {rnd + 1}: {out.correct}/{len(lat)} correct in {wall:.1f} s "
                      f"({len(lat) / wall:.2f} req/s); latency p50 {rounds[-1]['latency_s']['p50']:.2f} s, "
                      f"p90 {rounds[-1]['latency_s']['p90']:.2f} s, max {lat[-1]:.2f} s; "
                      f"server RSS {rss[f'after_round_{rnd + 1}']:.0f} MB")
                for problem in out.wrong[:10]:
                    print("  wrong:", problem)
                total.correct += out.correct
                total.wrong += out.wrong
                total.latencies += out.latencies
            sampler.stop()
            rss["peak"] = sampler.peak
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    n = len(total.latencies)
    print(f"all rounds: {total.correct}/{n} correct; server RSS MB: " +
          ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
    results = dict(clients=args.clients, requests_per_client=args.requests, rounds=rounds, correct=total.correct,
                   total=n, wrong=total.wrong, rss_mb={k: round(v, 1) for k, v in rss.items()},
                   concurrency=args.concurrency, checkpoint=str(app.checkpoints[label]),
                   load_average=os.getloadavg())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if total.correct == n else 1


if __name__ == "__main__":
    sys.exit(main())
