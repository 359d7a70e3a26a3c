"""What a layout draws from: a predictor with an image set (one row), or a predictor and the
images to run it on (one row each).

A layout never changes a predictor it was handed: the app and a notebook keep their image, and
its forward pass, across a figure. Given images (or an ``input_size`` other than the one the
image was set at), the layout runs them on its own copy of the predictor, which shares the model.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from ..predictor import SlotPredictor

    ImageLike: TypeAlias = str | Path | np.ndarray | Image.Image
    #: A predictor with an image set, or a predictor and the images to run it on (one row each).
    Source: TypeAlias = SlotPredictor | tuple[SlotPredictor, Iterable[ImageLike]]

__all__ = ["predictor_rows"]


def predictor_rows(source: Source, input_size: int | None = None) -> Iterator[SlotPredictor]:
    """A predictor with the row's image set, once per row.

    ``source`` a predictor: that predictor itself (its image, unless ``input_size`` asks for
    another forward pass, which a copy runs); ``(predictor, images)``: one copy of the predictor
    that runs ``set_image`` on each image in turn (any iterable: a list, or a tqdm bar over one).
    """
    if isinstance(source, tuple | list) and len(source) == 2 and hasattr(source[0], "set_image"):
        predictor, images = source
        if isinstance(images, str | Path | np.ndarray) or not isinstance(images, Iterable):
            images = [images]  # one image, not a list of them
        own = _own_copy(predictor)
        count = 0
        for image in images:
            own.set_image(image, input_size=input_size)
            count += 1
            yield own
        if count == 0:
            raise ValueError("no images given")
        return
    if not hasattr(source, "set_image"):
        raise TypeError("expected a SlotPredictor or (predictor, images)")
    if source.output is None:
        raise ValueError("the predictor has no image: call set_image() first, or pass (predictor, images)")
    if input_size is None:
        yield source
        return
    own = _own_copy(source)
    own.set_image(source.image, input_size=input_size)
    yield own


def _own_copy(predictor: SlotPredictor) -> SlotPredictor:
    """A shallow copy: the same model, device, precision and model info; ``set_image`` on it
    rebinds the copy's image, batch and output and leaves the original's alone."""
    return copy.copy(predictor)
