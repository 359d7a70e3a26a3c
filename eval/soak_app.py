"""Memory soak of the served web app (issue 16): does the server's resident memory stay flat?

Starts the app on loopback in a subprocess (this script's ``--serve`` mode: ``glmix_vis.app.launch``
plus a diagnostics hook), then ``--rounds`` rounds in which ``--clients`` concurrent
``gradio_client`` visitors send ``--requests`` uploads each to ``/analyze``, the endpoint the page's
button calls (every 5th request of a visitor also opens the soft maps, ``/soft_maps``; every 10th
also downloads a figure, ``/figure``, unless ``--analyze-only``). Every upload is a different real
photo: a random crop, flip and scale of scikit-image's photos and the bundled generated scenes,
``--side`` pixels on its longer side, PNG or JPEG, so every cache sees new keys. Each round's
visitors are new sessions, as new visitors are (``--same-visitors`` keeps them).

After every round: the server's RSS (``/proc``), and from the server itself the glibc heap
(``mallinfo2``: in use / free), Python objects (``gc``), its traced Python heap (``--trace``:
``tracemalloc``, which slows the server), gradio's sessions, the app's result cache, open file
descriptors, the files in gradio's and the app's temporary folders, pymalloc's arenas and the
anonymous mappings by size. Then the server collects its garbage and trims its heap, as its own
collector does every ``GC_INTERVAL_S`` seconds, and reports its *settled* RSS (the raw sample
also holds what waits for that collection). At the end: RSS after round
``--baseline-round`` and the growth from there to the last round, raw and settled, against
``--budget-mb``; with ``--trace``, the source lines whose traced memory grew most over the same rounds.

    python eval/soak_app.py [--rounds 50] [--clients 8] [--requests 10] [--side 256] [--trace] [--no-gc-freeze]
                            [--baseline-round 5] [--budget-mb 10] [--json OUT]

This measures memory, not time: requests are checked for an answer (one overlay per block asked
for), not for latency.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from served_app import BLOCK_CHOICES, free_port, rss_mb, run_round, wait_for

from glmix_vis.app.serving import GC_INTERVAL_S
from glmix_vis.app.settings import DEFAULT_MAX_SESSIONS
from glmix_vis.io import atomic_write_bytes

REPORT_ENV, TRACE_ENV, NO_FREEZE_ENV = "GLMIX_SOAK_REPORT", "GLMIX_SOAK_TRACE", "GLMIX_SOAK_NO_FREEZE"
GC_INTERVAL_ENV = "GLMIX_SOAK_GC_INTERVAL"
HOLDERS_ENV = "GLMIX_SOAK_HOLDERS"  # also list what holds the closed transports a full collection leaves


# ------------------------------------------------------------------------------ the server side
class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _glibc_heap() -> dict[str, float]:
    """MB of glibc's heap in use, free inside it, and in its own mappings (empty off glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    mb = 2 ** 20
    return dict(heap_in_use_mb=round(info.uordblks / mb, 1), heap_free_mb=round(info.fordblks / mb, 1),
                mmapped_mb=round(info.hblkhd / mb, 1))


def _resident() -> dict[str, float]:
    """MB resident by kind of mapping (/proc/self/smaps): the main heap, anonymous memory (other
    heap arenas, large blocks, thread stacks), and files (libraries, mapped weights)."""
    kinds = {"heap_rss_mb": 0, "anon_rss_mb": 0, "file_rss_mb": 0}
    kind = None
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                first = line.split(maxsplit=1)[0]
                if "-" in first and not first.endswith(":"):  # a mapping's header line
                    parts = line.split()
                    name = parts[5] if len(parts) > 5 else ""
                    kind = "heap_rss_mb" if name == "[heap]" else "file_rss_mb" if name.startswith("/") else "anon_rss_mb"
                elif first == "Rss:" and kind:
                    kinds[kind] += int(line.split()[1])
    except OSError:
        return {}
    return {k: round(v / 1024, 1) for k, v in kinds.items()}


def _anonymous_mappings() -> dict[str, list[float]]:
    """Anonymous mappings (/proc/self/smaps) by size, as [count, MB resident]: pymalloc's object arenas
    are 1 MiB each, thread stacks 8 MiB, glibc's thread heaps up to 64 MiB, large malloc blocks any size."""
    buckets: dict[str, list[float]] = {}
    size_kb, name = 0, ""
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                first = line.split(maxsplit=1)[0]
                if "-" in first and not first.endswith(":"):
                    lo, hi = (int(x, 16) for x in first.split("-"))
                    parts = line.split()
                    size_kb, name = (hi - lo) // 1024, parts[5] if len(parts) > 5 else ""
                elif first == "Rss:" and not name:
                    rss_kb = int(line.split()[1])
                    if rss_kb == 0:
                        continue
                    kind = ("1 MiB" if size_kb == 1024 else "<1 MiB" if size_kb < 1024 else "8 MiB" if size_kb == 8192
                            else "1-64 MiB" if size_kb < 65536 else ">=64 MiB")
                    entry = buckets.setdefault(kind, [0, 0.0])
                    entry[0] += 1
                    entry[1] = round(entry[1] + rss_kb / 1024, 1)
    except OSError:
        return {}
    return buckets


def _pymalloc() -> dict[str, float]:
    """pymalloc's arenas now and the bytes in its allocated blocks (``sys._debugmallocstats``)."""
    import re

    with tempfile.TemporaryFile("w+") as out:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read()
    found = {}
    for key, pattern in (("pymalloc_arenas", r"# arenas allocated current\s*=\s*([\d,]+)"),
                         ("pymalloc_used_mb", r"# bytes in allocated blocks\s*=\s*([\d,]+)")):
        m = re.search(pattern, text)
        if m:
            value = int(m.group(1).replace(",", ""))
            found[key] = value if key == "pymalloc_arenas" else round(value / 2 ** 20, 1)
    return found


def _collector_load(collector: Any) -> dict[str, float]:
    """The server's own collector so far: its collections, their mean duration and its share of one core."""
    if collector is None or not collector.collections:
        return {}
    return dict(collections=collector.collections, mean_ms=round(1e3 * collector.busy_s / collector.collections, 2),
                core_share=round(collector.busy_s / (collector.collections * collector.interval_s), 5))


def _folder(path: str | None) -> dict[str, float]:
    """Files and MB under ``path``; files the server deletes meanwhile (its cache sweeps) are skipped."""
    sizes = []
    for root, _dirs, names in os.walk(path or "", onerror=lambda _exc: None):
        for name in names:
            try:
                sizes.append(os.stat(os.path.join(root, name)).st_size)
            except OSError:
                pass
    return dict(files=len(sizes), mb=round(sum(sizes) / 2 ** 20, 2))


def serve(args: argparse.Namespace) -> int:
    """The app with a diagnostics hook: SIGUSR1 writes a report to $GLMIX_SOAK_REPORT, SIGUSR2
    also takes the tracemalloc snapshot later reports are compared with."""
    import tracemalloc

    if os.environ.get(TRACE_ENV):
        tracemalloc.start(int(os.environ[TRACE_ENV]))
    from glmix_vis.app import launch, serving

    if os.environ.get(NO_FREEZE_ENV):  # measure without the fix: launch() finds it done, and nothing runs
        serving._COLLECTOR = serving.CycleCollector()
    demo = launch(args.checkpoint, port=args.port, device="cpu", concurrency=args.concurrency,
                  max_sessions=args.max_sessions, prevent_thread_lock=True, quiet=True)
    if os.environ.get(GC_INTERVAL_ENV):  # the collector launch() started, at another interval (read every wait)
        serving._COLLECTOR.interval_s = float(os.environ[GC_INTERVAL_ENV])
    report_path = Path(os.environ[REPORT_ENV])
    state: dict[str, Any] = {"seq": 0, "baseline": None}

    def report(signum: int, frame: Any) -> None:
        """The signal handler: a failure is reported, never raised into the serving main thread."""
        try:
            write_report(signum, frame)
        except Exception as exc:  # noqa: BLE001  diagnostics must not stop the server they measure
            atomic_write_bytes(report_path, json.dumps(dict(seq=state["seq"], error=repr(exc))).encode())

    def write_report(signum: int, _frame: Any) -> None:
        state["seq"] += 1
        app = demo.slot_app
        objects = gc.get_objects()  # no gc.collect() first: what waits for a collection counts too
        types = Counter(type(o).__qualname__ for o in objects)
        closed = sum(1 for o in objects if type(o).__qualname__ == "_SelectorSocketTransport" and o.is_closing())
        if signum == signal.SIGUSR2:
            state["types"] = types
        data: dict[str, Any] = dict(
            seq=state["seq"], python_objects=len(objects), gc_counts=list(gc.get_count()), closed_transports=closed,
            frozen_objects=gc.get_freeze_count(), collector=_collector_load(serving._COLLECTOR),
            sessions=len(demo.state_holder.session_data), results=len(app.results), models=len(app.models),
            fds=len(os.listdir("/proc/self/fd")), threads=threading.active_count(),
            gradio_temp=_folder(os.environ.get("GRADIO_TEMP_DIR")), app_temp=_folder(tempfile.gettempdir()),
            **_glibc_heap(), **_resident(), **_pymalloc(), anonymous=_anonymous_mappings())
        if "types" in state and signum != signal.SIGUSR2:  # the kinds of Python objects that grew
            grown = types.copy()
            grown.subtract(state["types"])
            data["object_growth"] = {k: v for k, v in grown.most_common(10) if v > 0}
        del objects
        if os.environ.get(HOLDERS_ENV):  # who holds the closed transports that outlive a full collection
            gc.collect()
            held = [o for o in gc.get_objects() if type(o).__qualname__ == "_SelectorSocketTransport" and o.is_closing()]
            data["closed_transports_after_collect"] = len(held)
            data["held_by"] = dict(Counter(", ".join(sorted(type(r).__qualname__ for r in gc.get_referrers(t)
                                                           if r is not held)) for t in held).most_common(5))
            del held
        # what the server's own collector reaches within GC_INTERVAL_S: the garbage collected, free heap trimmed
        gc.collect()
        serving.release_free_heap()
        data["settled_rss_mb"] = round(rss_mb(os.getpid()), 1)
        data["settled_anonymous"] = _anonymous_mappings()
        data.update({f"settled_{k}": v for k, v in _pymalloc().items()})
        if tracemalloc.is_tracing():  # after the collection: what lives on, not what waits for it
            data["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2 ** 20, 2)
            snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            if signum == signal.SIGUSR2:
                state["baseline"] = snapshot
            elif state["baseline"] is not None:
                top = snapshot.compare_to(state["baseline"], "lineno")[:15]
                data["traced_growth"] = [dict(where=str(s.traceback[0]), kb=round(s.size_diff / 1024, 1),
                                              count=s.count_diff) for s in top]
                stacks = snapshot.compare_to(state["baseline"], "traceback")[:8] if tracemalloc.get_traceback_limit() > 1 else []
                data["traced_growth_stacks"] = [dict(kb=round(s.size_diff / 1024, 1), count=s.count_diff,
                                                     stack=[str(f) for f in s.traceback]) for s in stacks]
        atomic_write_bytes(report_path, json.dumps(data).encode())

    signal.signal(signal.SIGUSR1, report)
    signal.signal(signal.SIGUSR2, report)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(0.5)


# ------------------------------------------------------------------------------ the visitors


def _sources() -> list[np.ndarray]:
    from glmix_vis.app import example_files

    out = []
    for path in example_files().values():
        with Image.open(path) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out


def make_upload(sources: list[np.ndarray], seed: int, side: int, folder: Path) -> Path:
    """A photo nobody uploaded before: a random crop (half to all of each side), maybe mirrored,
    scaled to ``side`` on its longer side, as PNG or JPEG."""
    rng = np.random.default_rng(seed)
    src = sources[int(rng.integers(len(sources)))]
    h, w = src.shape[:2]
    ch, cw = int(h * rng.uniform(0.5, 1.0)), int(w * rng.uniform(0.5, 1.0))
    y, x = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    crop = src[y:y + ch, x:x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    im = Image.fromarray(np.ascontiguousarray(crop))
    scale = side / max(im.size)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.BILINEAR)
    path = folder / f"upload_{seed}.{'png' if seed % 2 else 'jpg'}"
    im.save(path)
    return path


def visitor(client: Any, label: str, input_size: int, sources: list[np.ndarray], seeds: list[int], side: int,
            folder: Path, mixed: bool, problems: list[str], lock: threading.Lock) -> None:
    """One visitor's requests of a round; what went wrong is appended to ``problems``."""
    from gradio_client import handle_file

    for i, seed in enumerate(seeds):
        path = make_upload(sources, seed, side, folder)
        blocks = BLOCK_CHOICES[seed % len(BLOCK_CHOICES)]
        try:
            status, gallery, *_ = client.predict(handle_file(str(path)), label, input_size, blocks, blocks[-1],
                                                 api_name="/analyze")
            problem = None if len(gallery) == len(blocks) else f"{path.name}: {status}"
            if mixed and problem is None and (i + 1) % 5 == 0:
                _, soft, _ = client.predict(handle_file(str(path)), label, input_size, blocks[-1],
                                            api_name="/soft_maps")
                problem = None if soft else f"{path.name}: no soft maps"
            if mixed and problem is None and (i + 1) % 10 == 0:
                figure, text = client.predict(handle_file(str(path)), label, input_size, blocks, blocks[-1],
                                              "slot-cam", "PNG", api_name="/figure")
                problem = None if figure else f"{path.name}: no figure ({text})"
        except Exception as exc:  # a failed request is reported, not fatal
            problem = f"{path.name}: {type(exc).__name__}: {exc}"
        finally:
            path.unlink(missing_ok=True)
        if problem:
            with lock:
                problems.append(problem)


class Server:
    """The app in a subprocess, with its diagnostics reports."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.report_path = folder / "report.json"
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", REPORT_ENV: str(self.report_path),
               "GRADIO_TEMP_DIR": str(folder / "gradio"), "TMPDIR": str(folder / "server-tmp")}
        (folder / "server-tmp").mkdir()
        if args.trace:
            env[TRACE_ENV] = str(args.trace_frames)
        if args.no_gc_freeze:
            env[NO_FREEZE_ENV] = "1"
        if args.gc_interval:
            env[GC_INTERVAL_ENV] = str(args.gc_interval)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", "--port", str(self.port),
               "--concurrency", str(args.concurrency), "--max-sessions", str(args.max_sessions)] + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
        self.log = open(folder / "server.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self._seq = 0

    def report(self, baseline: bool = False, timeout: float = 120) -> dict[str, Any]:
        self._seq += 1
        self.proc.send_signal(signal.SIGUSR2 if baseline else signal.SIGUSR1)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                data = json.loads(self.report_path.read_text())
                if data["seq"] == self._seq:
                    if "error" in data:
                        raise SystemExit(f"the server's report failed: {data['error']}")
                    return data
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        alive = "still running" if self.proc.poll() is None else f"exited with status {self.proc.returncode}"
        self.log.flush()
        tail = Path(self.log.name).read_text(errors="replace").splitlines()[-15:]
        raise SystemExit("the server did not write its report (" + alive + "); its log ends:\n" + "\n".join(tail))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _growth_summary(values: list[float], baseline_round: int) -> str:
    """Growth read three ways, less swayed by one sample than the verdict: the means of the five rounds
    after the baseline and of the last five, and the least-squares trend from the baseline round on."""
    v = np.asarray(values, dtype=float)
    after, last = v[baseline_round:baseline_round + 5], v[-5:]
    trend = np.polyfit(np.arange(baseline_round, len(v) + 1), v[baseline_round - 1:], 1)[0]
    return (f"mean of rounds {baseline_round + 1}-{baseline_round + len(after)} {after.mean():.1f} MB -> "
            f"of the last {len(last)} {last.mean():.1f} MB ({last.mean() - after.mean():+.1f}); "
            f"trend {trend:+.2f} MB a round")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint file (default: the bundled demo model)")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8, help="concurrent visitors per round")
    parser.add_argument("--requests", type=int, default=10, help="uploads per visitor and round")
    parser.add_argument("--side", type=int, default=256, help="longer side of every upload in pixels")
    parser.add_argument("--concurrency", type=int, default=2, help="the server's --concurrency")
    parser.add_argument("--max-sessions", type=int, default=DEFAULT_MAX_SESSIONS,
                        help="visitors' state the server keeps (the app's max_sessions)")
    parser.add_argument("--baseline-round", type=int, default=5, help="growth is counted from after this round")
    parser.add_argument("--budget-mb", type=float, default=10.0, help="allowed RSS growth after the baseline round")
    parser.add_argument("--analyze-only", action="store_true", help="no soft-map or figure requests")
    parser.add_argument("--same-visitors", action="store_true", help="keep the same visitors (sessions) every round")
    parser.add_argument("--trace", action="store_true", help="tracemalloc in the server (slower; lists what grew)")
    parser.add_argument("--trace-frames", type=int, default=1,
                        help="with --trace: frames kept per allocation; above 1 the growing call stacks are listed too "
                             "(16 frames: ~8x slower rounds)")
    parser.add_argument("--no-gc-freeze", action="store_true",
                        help="serve without glmix_vis.app.serving.collect_cycles_promptly (no freeze, no periodic "
                             "collection: to measure its effect)")
    parser.add_argument("--gc-interval", type=float,
                        help=f"seconds between the server's own collections (default {GC_INTERVAL_S:.0f})")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args)
    if not 1 <= args.baseline_round < args.rounds:
        parser.error("--baseline-round must lie in 1..rounds-1")

    import ssl

    import certifi
    from gradio_client import Client

    from glmix_vis.app.settings import DEMO_LABEL

    sources = _sources()
    rounds: list[dict[str, Any]] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="glmix-soak-") as tmp:
        folder = Path(tmp)
        uploads, downloads = folder / "uploads", folder / "downloads"
        uploads.mkdir()
        tempfile.tempdir = str(folder / "client-tmp")  # gradio_client leaves a folder per download there
        Path(tempfile.tempdir).mkdir()
        server = Server(args, folder)
        visitors: list[Any] = []
        # one TLS context for every request: gradio_client would otherwise build one per HTTP call
        tls = ssl.create_default_context(cafile=certifi.where())
        try:
            wait_for(server.url, server.proc)
            label = args.checkpoint and Path(args.checkpoint).name or DEMO_LABEL
            idle = rss_mb(server.proc.pid)
            print(f"server pid {server.proc.pid} on {server.url}; RSS idle {idle:.0f} MB; {args.rounds} rounds of "
                  f"{args.clients} visitors x {args.requests} uploads of {args.side} px", flush=True)

            def new_client() -> Any:
                return Client(server.url, verbose=False, ssl_verify=tls, download_files=str(downloads),
                              httpx_kwargs={"timeout": 600})

            input_size = None
            visitors = [new_client() for _ in range(args.clients)]
            for rnd in range(1, args.rounds + 1):
                if rnd > 1 and not args.same_visitors:  # the last round's visitors leave, new ones come
                    for v in visitors:
                        v.close()
                    visitors = [new_client() for _ in range(args.clients)]
                if input_size is None:
                    input_size = int(visitors[0].view_api(return_format="dict", print_info=False)["named_endpoints"]
                                     ["/analyze"]["parameters"][2]["parameter_default"])
                lock, before = threading.Lock(), len(problems)
                seeds = [[(rnd * args.clients + c) * args.requests + i for i in range(args.requests)]
                         for c in range(args.clients)]
                wall = run_round(visitor, [(visitors[c], label, input_size, sources, seeds[c], args.side, uploads,
                                            not args.analyze_only, problems, lock) for c in range(args.clients)])
                rss = rss_mb(server.proc.pid)
                info = server.report(baseline=rnd == args.baseline_round)
                shutil.rmtree(downloads, ignore_errors=True)
                shutil.rmtree(tempfile.tempdir, ignore_errors=True)
                Path(tempfile.tempdir).mkdir()
                rounds.append(dict(round=rnd, rss_mb=round(rss, 1), wall_s=round(wall, 1),
                                   failed=len(problems) - before, **{k: v for k, v in info.items() if k != "seq"}))
                heap = (f"malloc {info['heap_in_use_mb']:.0f} in use + {info['heap_free_mb']:.0f} free + "
                        f"{info['mmapped_mb']:.0f} mmapped MB; " if "heap_in_use_mb" in info else "")
                if "anon_rss_mb" in info:
                    heap += (f"resident: [heap] {info['heap_rss_mb']:.0f}, anon {info['anon_rss_mb']:.0f}, "
                             f"files {info['file_rss_mb']:.0f} MB; ")
                traced = f"traced {info['traced_mb']:.1f} MB; " if "traced_mb" in info else ""
                heap += (f"settled RSS {info['settled_rss_mb']:.1f} MB, pymalloc arenas "
                         f"{info.get('settled_pymalloc_arenas')}; ")
                print(f"round {rnd:3d}: RSS {rss:7.1f} MB; {heap}{traced}objects {info['python_objects']}; "
                      f"closed transports {info['closed_transports']}; "
                      f"sessions {info['sessions']}; results {info['results']}; fds {info['fds']}; "
                      f"gradio temp {info['gradio_temp']['files']} files {info['gradio_temp']['mb']} MB; "
                      f"app temp {info['app_temp']['files']} files; {wall:.0f} s"
                      + (f"; {len(problems) - before} failed" if len(problems) > before else ""), flush=True)
        finally:
            for v in visitors:
                v.close()
            server.stop()
    base = rounds[args.baseline_round - 1]["rss_mb"]
    growth = rounds[-1]["rss_mb"] - base
    verdict = "PASS" if growth <= args.budget_mb and not problems else "FAIL"
    print(f"RSS after round {args.baseline_round}: {base:.1f} MB; after round {len(rounds)}: {rounds[-1]['rss_mb']:.1f} MB; "
          f"growth {growth:+.1f} MB (budget {args.budget_mb:.0f} MB); {len(problems)} failed requests -> {verdict}")
    settled = rounds[-1]["settled_rss_mb"] - rounds[args.baseline_round - 1]["settled_rss_mb"]
    interval = args.gc_interval or GC_INTERVAL_S
    print(f"settled RSS (after the collection and heap trim the server's collector makes every "
          f"{interval:g} s): {rounds[args.baseline_round - 1]['settled_rss_mb']:.1f} -> "
          f"{rounds[-1]['settled_rss_mb']:.1f} MB, growth {settled:+.1f} MB")
    for key, name in (("rss_mb", "RSS"), ("settled_rss_mb", "settled RSS")):
        print(f"{name}: " + _growth_summary([r[key] for r in rounds], args.baseline_round))
    gaps = [r["rss_mb"] - r["settled_rss_mb"] for r in rounds[args.baseline_round:]]
    print(f"waiting for the collection at a sample (RSS - settled RSS), rounds {args.baseline_round + 1}-{len(rounds)}: "
          f"mean {np.mean(gaps):.1f} MB, at most {max(gaps):.1f} MB")
    if load := rounds[-1].get("collector"):
        print(f"the server's collector: {load['collections']} collections of {load['mean_ms']:.1f} ms on average, "
              f"{100 * load['core_share']:.2f}% of one core")
    for p in problems[:10]:
        print("  failed:", p)
    if rounds[-1].get("object_growth"):
        print("  Python objects that grew since the baseline round: " +
              ", ".join(f"{k} {v:+d}" for k, v in rounds[-1]["object_growth"].items()))
    for g in rounds[-1].get("traced_growth", [])[:10]:
        print(f"  traced growth {g['kb']:+9.1f} KB {g['count']:+6d} blocks  {g['where']}")
    results = dict(args=vars(args), rss_idle_mb=round(idle, 1), rss_after_baseline_mb=base, growth_mb=round(growth, 1),
                   verdict=verdict, rounds=rounds, problems=problems, load_average=os.getloadavg())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
