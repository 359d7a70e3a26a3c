"""The web demo as a script: ``python apps/gradio_app.py [--host H] [--port P] [--checkpoint CKPT]``.

The same as ``glmix-vis app`` (same options, defaults from :mod:`glmix_vis.app.settings`); the app
itself lives in the :mod:`glmix_vis.app` package (settings, serving, backend, page).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from glmix_vis.cli._dispatch import UserError
from glmix_vis.cli.app_cmd import add_arguments, run


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and serve the app."""
    parser = argparse.ArgumentParser(prog="gradio_app.py", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (UserError, FileNotFoundError, ValueError) as exc:
        print(f"gradio_app.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
