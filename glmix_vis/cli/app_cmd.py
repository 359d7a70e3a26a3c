"""``glmix-vis app``: the web demo (Gradio) on the bundled model or a chosen checkpoint."""

from __future__ import annotations

import argparse
import signal

from ..app.settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DEVICE,
    DEFAULT_HOST,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_SIDE,
    DEFAULT_PORT,
    file_size,
)
from ._args import add_precision_argument
from ._dispatch import UserError

__all__ = ["add_parser", "add_arguments", "run"]

# The defaults come from glmix_vis.app.settings, which does not import gradio: building the
# parser stays light (tests/test_app_settings.py checks it).


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the ``app`` subcommand."""
    p = subparsers.add_parser(name, help="start the web app",
                              description="Serve the web demo: upload or pick an image and see each GLMix "
                                          "block's slot groups, soft maps, class evidence and pseudo-masks. "
                                          "Visitors choose among the bundled demo model, CKPT and the "
                                          "checkpoints in $GLMIX_CHECKPOINT_DIR.")
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options shared by ``glmix-vis app`` and ``apps/gradio_app.py``."""
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to bind (default {DEFAULT_HOST}: this machine only; 0.0.0.0 serves the network)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--checkpoint", metavar="CKPT",
                   help="checkpoint file or name to serve first (default: the bundled demo model)")
    p.add_argument("--max-file-size", default=DEFAULT_MAX_FILE_SIZE,
                   help=f"largest accepted upload, e.g. 20mb (default {DEFAULT_MAX_FILE_SIZE})")
    p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                   help=f"uploads are downscaled to this longer side first (default {DEFAULT_MAX_SIDE})")
    p.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                   help=f"requests computed at once; others queue (default {DEFAULT_CONCURRENCY})")
    p.add_argument("--device", default=DEFAULT_DEVICE, help=f"cpu, cuda, mps or auto (default {DEFAULT_DEVICE})")
    add_precision_argument(p)


def run(args: argparse.Namespace) -> int:
    """Start the server; returns when it is stopped."""
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    if args.concurrency < 1 or args.max_side < 32:
        raise UserError("--concurrency must be at least 1 and --max-side at least 32")
    try:
        args.max_file_size = file_size(args.max_file_size)
    except ValueError as exc:
        raise UserError(f"--max-file-size: {exc}") from None
    from ..app.serving import address_problem
    from ..devices import resolve_precision

    resolve_precision(args.precision, args.device)  # bf16 on a GPU without it: one line now, not a page error
    problem = address_problem(args.host, args.port)  # before gradio and the model load: seconds sooner
    if problem:
        raise UserError(problem)
    from ..app.serving import ServerScratch

    with ServerScratch() as scratch:  # before gradio is imported: it reads GRADIO_TEMP_DIR then
        from ..app import ServeError, launch

        try:
            launch(args.checkpoint, host=args.host, port=args.port, max_file_size=args.max_file_size,
                   concurrency=args.concurrency, max_side=args.max_side, device=args.device,
                   precision=args.precision)
        except ServeError as exc:  # the port is taken, the checkpoint unusable, ...: one line, exit status 2
            raise UserError(str(exc)) from None
    return 128 + scratch.signalled if scratch.signalled == signal.SIGTERM else 0
