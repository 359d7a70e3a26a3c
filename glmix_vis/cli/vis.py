"""``glmix-vis``: slot maps, figures, the web app and checkpoint tools."""

from __future__ import annotations

from collections.abc import Sequence

from ._dispatch import main as _main

COMMANDS = {
    "slots": "glmix_vis.cli.slots_cmd",
    "checkpoint": "glmix_vis.cli.checkpoint_cmd",
    "figure": "glmix_vis.cli.figure_cmd",
    "app": "glmix_vis.cli.app_cmd",
}


def main(argv: Sequence[str] | None = None) -> int:
    return _main("glmix-vis", __doc__, COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
