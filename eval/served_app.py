"""What the scripts that run the web app as a server share: a free port, waiting for it to answer,
its resident memory, and a round of concurrent visitors (``load_test_app.py``, ``soak_app.py``)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence

__all__ = ["BLOCK_CHOICES", "free_port", "rss_mb", "run_round", "wait_for"]


#: The block selections the load test and the soak cycle through (a visitor ticking boxes).
BLOCK_CHOICES = ([0, 1, 2, 3], [3], [0, 2], [1, 3])


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (``VmRSS`` of ``/proc/PID/status``; 0 if absent)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until the gradio server at ``url`` answers (it exits the script if the server dies or stays silent)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "config", timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the server did not answer at {url} within {timeout:.0f} s")


def run_round(target: Callable[..., None], visitors_args: Sequence[tuple]) -> float:
    """Run ``target(*args)`` for every visitor's ``args`` at once, one thread each; wall seconds until all end."""
    threads = [threading.Thread(target=target, args=args) for args in visitors_args]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0
