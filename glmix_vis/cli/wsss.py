"""``glmix-wsss``: generated datasets, classifier training and WSSS evaluation (``python -m`` for torchrun)."""

from .scripts import WSSS_COMMANDS as COMMANDS
from .scripts import wsss_main as main

__all__ = ["COMMANDS", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
