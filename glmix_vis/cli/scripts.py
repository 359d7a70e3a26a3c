"""The two console scripts and their subcommands (each a module imported only when it runs)."""

from __future__ import annotations

from ._dispatch import console_script

__all__ = ["VIS_COMMANDS", "WSSS_COMMANDS", "vis_main", "wsss_main"]

VIS_COMMANDS: dict[str, str] = {
    "slots": "glmix_vis.cli.slots_cmd",
    "checkpoint": "glmix_vis.cli.checkpoint_cmd",
    "figure": "glmix_vis.cli.figure_cmd",
    "app": "glmix_vis.cli.app_cmd",
    "slot-quality": "glmix_vis.cli.slot_quality_cmd",
    "atlas": "glmix_vis.cli.atlas_cmd",
}
WSSS_COMMANDS: dict[str, str] = {
    "make-data": "glmix_vis.cli.make_data_cmd",
    "train": "glmix_vis.cli.train_cmd",
    "train-seg": "glmix_vis.cli.train_seg_cmd",
    "eval": "glmix_vis.cli.eval_cmd",
}

vis_main = console_script("glmix-vis", "glmix-vis: slot maps, figures, the web app and checkpoint tools.",
                          VIS_COMMANDS)
wsss_main = console_script("glmix-wsss", "glmix-wsss: generated datasets, classifier training, WSSS "
                           "evaluation and segmenter training (stage 2).", WSSS_COMMANDS)
