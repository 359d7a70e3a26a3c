"""``glmix-wsss``: generated datasets, classifier training and WSSS evaluation."""

from __future__ import annotations

from collections.abc import Sequence

from ._dispatch import main as _main

COMMANDS: dict[str, str] = {
    "make-data": "glmix_vis.cli.make_data_cmd",
    "train": "glmix_vis.cli.train_cmd",
    "eval": "glmix_vis.cli.eval_cmd",
}


def main(argv: Sequence[str] | None = None) -> int:
    return _main("glmix-wsss", __doc__, COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
