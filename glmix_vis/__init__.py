"""glmix-vis: slot assignment maps, weakly-supervised segmentation and figures for GLNet (GLMix)."""

from .models import GLNet, SlotMap, SlotOutput

__version__ = "0.1.0"
__all__ = ["GLNet", "SlotMap", "SlotOutput", "__version__"]
