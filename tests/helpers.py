"""Plain helpers the tests share (fixtures live in conftest.py; import these by name)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

T = TypeVar("T")

#: The classes of the app tests' random checkpoint (conftest's ``nano_checkpoint``).
APP_CLASSES = ["background", "disk", "square", "star"]
#: The classes of conftest's ``tiny_predictor`` random model (the figure tests check structure, not looks).
TINY_CLASSES = ["background", "disk", "square", "star"]


def gradient_photo(h: int = 96, w: int = 128) -> np.ndarray:
    """A photo-like RGB test image: colour gradients with a bright rectangle."""
    y, x = np.mgrid[:h, :w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (x * 255 // w).astype(np.uint8)
    img[..., 1] = (y * 255 // h).astype(np.uint8)
    img[h // 4: h // 2, w // 4: w // 2] = (250, 250, 40)
    return img


def random_checkpoint(root: Path, *, input_size: int | None = None, seed: int | None = None,
                      name: str = "nano.safetensors") -> Path:
    """A random ``glnet_nano`` whose head has the classes of the generated scenes at ``root``, saved
    with its metadata as a trained checkpoint is (``input_size``: recorded when given)."""
    import timm
    import torch

    from glmix_vis.data import open_dataset
    from glmix_vis.models.checkpoints import save_safetensors

    classes = list(open_dataset("voc", root, "val").class_names)
    if seed is not None:
        torch.manual_seed(seed)
    model = timm.create_model("glnet_nano", num_classes=len(classes) - 1)
    meta = dict(model="glnet_nano", classes=classes)
    if input_size is not None:
        meta["input_size"] = [input_size, input_size]
    path = root / name
    save_safetensors(model.state_dict(), path, meta=meta)
    return path


def wait_until(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """Poll ``predicate`` every 50 ms until it returns something true (returned), or fail the test
    after ``timeout`` seconds naming ``what`` it waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")
