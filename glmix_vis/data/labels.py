"""What a model's outputs mean: one :class:`LabelSpace` value, and the one rule that names a
checkpoint's classes (:meth:`LabelSpace.from_checkpoint`).

Segmentation classes are listed background first. For a head of ``n`` outputs:

* ``"metadata"``: the checkpoint's metadata names its classes (``head="foreground"``: background
  first already, the head scores the rest; one name per output: ``background`` put in front);
* ``"imagenet"``: otherwise a 1000-output head (an official ImageNet checkpoint, or one converted
  from it) is read as the PASCAL VOC classes through the ImageNet-to-VOC map
  (:mod:`.imagenet_voc`); the head's own outputs keep their ImageNet names (``head_names``) and
  its scores are a softmax;
* ``"generic"``: any other head gets ``class_0``, ``class_1``, ... after ``background``;
* ``"segmenter"``: a segmenter's metadata (``head="segmentation"``) lists every class its per-pixel
  head scores, background included (``n`` names); its image-level head scores the foreground
  classes, one sigmoid each (derived from the segmentation), and ``segmentation`` is set;
* metadata that names some other number of classes than the head has is an error, never a guess.

A new kind of checkpoint is one more branch of :meth:`LabelSpace.from_checkpoint` and one more ``source``.

Here, below the models, so that :mod:`glmix_vis.loading` and the training loop read the same
value: the metadata comes in through :class:`ClassListing` (what
:class:`glmix_vis.models.meta.CheckpointMeta` answers), so this module imports nothing from
``models``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from .imagenet_voc import IMAGENET_NUM_CLASSES, imagenet_class_names, voc_class_map
from .voc import VOC_CLASSES

__all__ = ["BACKGROUND", "GENERIC_PREFIX", "IMAGENET_NUM_CLASSES", "LABEL_SOURCES", "ClassListing", "LabelSpace",
           "LabelSource"]

#: The first segmentation class of every label space.
BACKGROUND = VOC_CLASSES[0]
#: Unnamed head outputs are called ``class_0``, ``class_1``, ...
GENERIC_PREFIX = "class_"
LabelSource = Literal["metadata", "imagenet", "generic", "dataset", "segmenter"]
#: Where a label space's names come from (``dataset``: a training run's dataset, before any checkpoint;
#: ``segmenter``: a segmenter's metadata).
LABEL_SOURCES: tuple[str, ...] = ("metadata", "imagenet", "generic", "dataset", "segmenter")


class ClassListing(Protocol):
    """What the class-name rule asks of a checkpoint's metadata (:class:`~glmix_vis.models.meta.CheckpointMeta`)."""

    classes: list[str] | None
    head: str

    @property
    def is_segmentation(self) -> bool:
        """Whether the checkpoint is a segmenter whose per-pixel head scores every class."""

    @property
    def lists_background(self) -> bool:
        """Whether ``classes`` lists background first and the head scores the rest."""

    def head_class_names(self, num_outputs: int) -> list[str] | None:
        """One name per head output, if the metadata names them all."""

    def segmentation_classes(self, num_outputs: int) -> list[str] | None:
        """The segmentation classes, background first, if the metadata names the head's classes."""


@dataclass(frozen=True)
class LabelSpace:
    """The classes a model segments and how its head scores them.

    Attributes:
        class_names: the segmentation classes, background first.
        source: where the names come from (one of :data:`LABEL_SOURCES`).
        class_map: ``None``: the head scores the foreground classes directly, one output each;
            else one group of head outputs per foreground class (an ImageNet head read as VOC).
        head_names: with a ``class_map``, the names of the head's own outputs.
        multilabel: sigmoid per class (True) or a softmax over the head (False).

    ``segmentation`` (a property): the model also scores every class at every pixel (a segmenter).
    """

    class_names: tuple[str, ...]
    source: LabelSource = "metadata"
    class_map: tuple[tuple[int, ...], ...] | None = None
    head_names: tuple[str, ...] | None = None
    multilabel: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if not self.class_names:
            raise ValueError("a label space needs at least the background class")
        if self.source not in LABEL_SOURCES:
            raise ValueError(f"unknown label source {self.source!r}; expected one of {', '.join(LABEL_SOURCES)}")
        if self.class_map is not None:
            object.__setattr__(self, "class_map", tuple(tuple(int(i) for i in g) for g in self.class_map))
            if len(self.class_map) != len(self.foreground_names):
                raise ValueError(f"class_map has {len(self.class_map)} groups for "
                                 f"{len(self.foreground_names)} foreground classes")
        if self.head_names is not None:
            object.__setattr__(self, "head_names", tuple(self.head_names))
            if self.class_map is None:
                raise ValueError("head_names name the outputs a class_map groups; give the class_map too")

    # ------------------------------------------------------------------ the rule
    @classmethod
    def from_checkpoint(cls, meta: ClassListing, head_size: int) -> LabelSpace:
        """The label space of a checkpoint whose head has ``head_size`` outputs (the module
        docstring states the rule). A ``ValueError`` when the metadata names another number of
        classes than the head has."""
        listed = meta.segmentation_classes(head_size)
        if meta.is_segmentation:
            if listed is None:
                raise ValueError(f"its metadata lists {len(meta.classes or [])} segmentation classes "
                                 f"but the segmentation head has {head_size} outputs")
            return cls(tuple(listed), "segmenter")
        if head_size == IMAGENET_NUM_CLASSES and not (meta.lists_background and listed):
            return cls.imagenet(meta.head_class_names(head_size))
        if listed is not None:
            return cls(tuple(listed), "metadata")
        if meta.classes is not None:
            raise ValueError(f"its metadata lists {len(meta.classes)} class names ({meta.head} outputs) "
                             f"but the head has {head_size} outputs")
        return cls.generic(head_size)

    @classmethod
    def imagenet(cls, head_names: Sequence[str] | None = None) -> LabelSpace:
        """A 1000-output ImageNet head read as the PASCAL VOC classes: background, then the 20 VOC
        classes, each scored by the softmax mass of the ImageNet classes that depict it.
        ``head_names``: the outputs' names (default: timm's ImageNet-1k names)."""
        names = tuple(head_names) if head_names is not None else imagenet_class_names()
        return cls(tuple(VOC_CLASSES), "imagenet", class_map=tuple(map(tuple, voc_class_map())),
                   head_names=names, multilabel=False)

    @classmethod
    def generic(cls, head_size: int) -> LabelSpace:
        """Unnamed outputs: ``background``, ``class_0`` ... ``class_{n-1}``."""
        return cls((BACKGROUND, *(f"{GENERIC_PREFIX}{k}" for k in range(head_size))), "generic")

    @classmethod
    def of_dataset(cls, class_names: Sequence[str]) -> LabelSpace:
        """A dataset's classes (background first), as a classifier trained on it scores them: one
        sigmoid output per foreground class."""
        return cls(tuple(class_names), "dataset")

    # ------------------------------------------------------------------ reading it
    @property
    def segmentation(self) -> bool:
        """Whether the model scores every class at every pixel (a segmenter), beside its image-level head."""
        return self.source == "segmenter"

    @property
    def foreground_names(self) -> tuple[str, ...]:
        return self.class_names[1:]

    @property
    def head_size(self) -> int:
        """How many outputs the head has."""
        return len(self.head_names) if self.head_names is not None else len(self.foreground_names)

    @property
    def named(self) -> bool:
        """Whether the classes have real names (not ``class_0`` ... made up for an unnamed head)."""
        return self.source != "generic"
