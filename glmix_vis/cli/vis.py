"""``glmix-vis``: slot maps, figures, the web app and checkpoint tools."""

from .scripts import VIS_COMMANDS as COMMANDS
from .scripts import vis_main as main

__all__ = ["COMMANDS", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
