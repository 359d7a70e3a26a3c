"""The web app's settings and defaults, importable without gradio.

``glmix-vis app``'s argument parser reads its defaults from here, so that building the parser
(``glmix-vis --help``) does not import gradio; the backend and the page read the rest.
"""

from __future__ import annotations

from ..io import DEFAULT_MAX_PIXELS

__all__ = [
    "CACHE_CHECK_S", "CACHE_MAX_AGE_S", "CACHE_MAX_FILES", "CACHE_MAX_MB", "DEFAULT_CONCURRENCY", "DEFAULT_DEVICE", "DEFAULT_HOST", "DEFAULT_MAX_FILE_SIZE",
    "DEFAULT_MAX_PIXELS", "DEFAULT_MAX_SESSIONS", "DEFAULT_MAX_SIDE", "DEFAULT_METHOD", "DEFAULT_PORT",
    "DEFAULT_QUEUE_SIZE", "DEFAULT_TIME_BUDGET", "DEMO_LABEL", "EXAMPLE_PHOTOS", "FIGURE_CLASSES", "INPUT_SIZES", "JPEG_QUALITY",
    "MAX_EVIDENCE_PANELS", "MAX_FIGURES", "MAX_SOFT_MAPS", "MIN_DISPLAY_SIDE", "MODEL_CACHE_SIZE", "QUEUE_EVENT_RECORDS", "RESULT_CACHE_SIZE", "SOFT_SHOWN", "SOFT_SIDE",
    "TAB_ATLAS", "TAB_CLASSES", "TAB_SLOTS", "TAB_SOFT", "file_size",
]

# ------------------------------------------------------------------------------ serving (CLI options)
#: The server binds this machine only unless told otherwise (0.0.0.0 serves the network).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
#: Uploads bigger than this many bytes are refused by the server before any callback runs.
DEFAULT_MAX_FILE_SIZE = "20mb"
#: The units of an upload limit (gradio's, 1024 apart).
FILE_SIZE_UNITS = ("b", "kb", "mb", "gb", "tb")
#: Uploads are downscaled so that their longer side is at most this many pixels.
DEFAULT_MAX_SIDE = 1024
#: Requests computed at the same time; the others wait in the queue.
DEFAULT_CONCURRENCY = 2
#: cpu, cuda, mps or auto.
DEFAULT_DEVICE = "auto"
#: Waiting requests beyond this are turned away ("queue full") instead of piling up.
DEFAULT_QUEUE_SIZE = 64
#: Seconds one request may compute before it stops with a message (Score-CAM on glnet_stl would
#: otherwise hold a worker for half an hour); checked between the batches of the costly methods.
DEFAULT_TIME_BUDGET = 60.0
#: Visitors whose page state gradio keeps (least recently used dropped first).
DEFAULT_MAX_SESSIONS = 256
# DEFAULT_MAX_PIXELS (glmix_vis.io): larger uploads are refused as decompression bombs.
#: gradio's copies of visitors' files (uploads, the pictures sent back) are deleted this many
#: seconds after they were written, checked every CACHE_CHECK_S seconds (gradio's delete_cache) ...
CACHE_MAX_AGE_S, CACHE_CHECK_S = 3600, 600
#: ... and beyond this many files or megabytes the oldest go first (glmix_vis.app.file_cache).
CACHE_MAX_FILES, CACHE_MAX_MB = 2048, 1024
#: Requests whose timing gradio's queue keeps for its monitoring page (gradio's default: 10,000).
QUEUE_EVENT_RECORDS = 500

# ------------------------------------------------------------------------------ what can be served
DEMO_LABEL = "demo model (bundled)"
#: scikit-image photos offered as examples beside the bundled generated scenes.
EXAMPLE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
#: Models kept loaded (by checkpoint file) and forward passes kept (by image, model and size).
MODEL_CACHE_SIZE = 2
RESULT_CACHE_SIZE = 8

# ------------------------------------------------------------------------------ the views
#: Allowed range of the input resolution slider (short side the network sees, multiples of 32).
INPUT_SIZES = (96, 640)
#: Longer side of the soft-map and evidence pictures.
SOFT_SIDE = 512
#: The soft-map gallery shows this many slots at first (a 64-slot block stays one screen long).
MAX_SOFT_MAPS = 16
#: Which slots the soft-map gallery shows: the MAX_SOFT_MAPS largest, every one that owns pixels, all.
SOFT_SHOWN = ("largest", "owning", "all")
#: Smaller images are shown enlarged to this longer side (the network still sees the original).
MIN_DISPLAY_SIDE = 448
MAX_EVIDENCE_PANELS = 6
#: Classes whose evidence the figure of the classes tab shows (most likely first).
FIGURE_CLASSES = 3
TAB_SLOTS, TAB_SOFT, TAB_CLASSES, TAB_ATLAS = "slots", "soft", "classes", "atlas"
DEFAULT_METHOD = "slot-cam"
#: Gallery pictures are sent to the browser as JPEG of this quality.
JPEG_QUALITY = 90
#: Figure files kept for download (older ones are deleted).
MAX_FIGURES = 16


def file_size(value: str | int) -> str | int:
    """An upload limit (``--max-file-size``) as gradio reads it, checked before anything loads:
    ``"20mb"``, ``"500 KB"`` (a number and a unit of :data:`FILE_SIZE_UNITS`) or a number of bytes.
    Anything else is a one-line ``ValueError`` (gradio itself says ``invalid literal for int()``,
    and only once the model is loaded)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"an upload limit must be at least 1 byte, got {value}")
        return value
    text = str(value).replace(" ", "").lower()
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number):] or "b"
    if not number.isdigit() or unit not in FILE_SIZE_UNITS or int(number) < 1:
        raise ValueError(f"an upload limit is a whole number with a unit ({', '.join(FILE_SIZE_UNITS)}), "
                         f"e.g. 20mb; got {value!r}")
    return f"{int(number)}{unit}"
