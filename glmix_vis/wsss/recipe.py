"""How one pseudo-mask is made: every setting in one frozen, self-validating value.

A :class:`MaskRecipe` holds the evidence method and its options, the refinement of the evidence
(PAR, the slot walk) and its options, whether the dense CRF follows and with which parameters,
the test-time augmentation (scales, flip) and the background threshold. It is the one owner of
those settings: the pipeline, the predictor, ``glmix-wsss eval``, the figures and the app all take
a recipe, and nothing forwards the settings one by one.

* **Validated when built.** An unknown method, option or refinement, an option of the wrong type,
  an impossible combination (the slot oracle with a CRF) or a threshold of 5 is a ``ValueError``
  at construction, before any data or model is touched.
* **One threshold rule.** ``bg_threshold=None`` means "the value the checkpoint records for the
  method, else IRN's 0.15"; :meth:`MaskRecipe.resolved` applies it, once.
* **One record.** :meth:`MaskRecipe.record` is what ``OUT/settings.json`` stores and compares, so a
  resumed eval never mixes masks made another way.
* **Confidence band.** ``ignore_band=(low, high)`` writes 255 (not learnt by stage 2) where the
  best allowed class's evidence lies in ``(low, high]``: ToCo's low/high thresholds on the CAM
  (``cam_to_label``: at most ``low`` is background, above ``high`` foreground, between ignored).
  It applies to the mask before the CRF and, kept, to the mask after it: the CRF runs on the full
  unary and the band's pixels are then written 255 too (as CLIP-ES sets low-confidence pixels to
  255 in its CRF step), so the two folders ignore the same pixels.
* **A segmenter's predictions** (method ``seg``): the argmax over every class, no image labels,
  no background threshold, no refinement and no band.
* **One short name.** ``method[+refinement][+crf]`` (``slot-cam+slot-walk+crf``) names a recipe
  with default options; figure columns and table rows carry it (:meth:`parse`, :attr:`name`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .crf import CRFParams
from .evidence import available_evidence_methods, evidence_class

__all__ = ["MaskRecipe", "Options", "ORACLE_METHOD", "parse_recipes", "parse_assignments", "mask_methods",
           "method_option_defaults", "METHOD_TITLES", "REFINEMENT_TITLES"]

#: The slot oracle's name among the methods: no evidence, each slot takes its majority ground-truth class.
ORACLE_METHOD = "slot-oracle"
#: The oracle's options (which GLMix block's slots it labels).
ORACLE_OPTIONS = {"block": -1}
#: How a person writes each method's name in a figure.
METHOD_TITLES = {"cam": "CAM", "slot-cam": "slot-CAM", "token": "token", "gradcam": "Grad-CAM",
                 "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM", "layercam": "LayerCAM",
                 "eigencam": "EigenCAM", "scorecam": "Score-CAM", ORACLE_METHOD: "slot oracle"}
REFINEMENT_TITLES = {"par": "PAR", "slot-walk": "slot walk"}
CRF = "crf"


class Options(Mapping[str, Any]):
    """A read-only, hashable mapping of option names to values (lists are kept as tuples)."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values = {str(k): _frozen(v) for k, v in dict(values or {}).items()}

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items(), key=lambda kv: kv[0])))

    def __repr__(self) -> str:
        return repr(self._values)


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def mask_methods() -> list[str]:
    """Every method a recipe may name: the registered evidence methods and the slot oracle."""
    return available_evidence_methods() + [ORACLE_METHOD]


def method_option_defaults(method: str) -> dict[str, Any]:
    """The options ``method`` takes, with their defaults."""
    return dict(ORACLE_OPTIONS) if method == ORACLE_METHOD else evidence_class(method).option_defaults()


def _refinements() -> tuple[str, ...]:
    from .refinement import REFINEMENTS  # imported here: the refinements import torch-heavy code

    return REFINEMENTS


@dataclass(frozen=True)
class MaskRecipe:
    """Every setting of one pseudo-mask (see the module docstring).

    Attributes:
        method: an evidence method (:func:`mask_methods`), or ``slot-oracle`` (eval only).
        refinement: ``none``, ``par`` or ``slot-walk``: refines the evidence before the threshold.
        crf: whether the dense CRF follows (``crf_params``).
        method_options, refinement_options: by name, checked against what the method or the
            refinement takes (``SlotCAMConfig``'s fields, ``PARParams``, ``SlotWalkConfig``, ...).
        scales, flip: test-time augmentation (``(1.0,)`` and ``False``: none).
        bg_threshold: a pixel is background unless its best allowed class scores above it;
            ``None``: the checkpoint's tuned value for the method (:meth:`resolved`).
        ignore_band: ``(low, high)``: pixels whose best allowed class scores in ``(low, high]`` are
            written 255 (see the module docstring); ``None``: every pixel labelled.
    """

    method: str = "slot-cam"
    refinement: str = "none"
    crf: bool = False
    method_options: Mapping[str, Any] = field(default_factory=Options)
    refinement_options: Mapping[str, Any] = field(default_factory=Options)
    crf_params: CRFParams = field(default_factory=CRFParams)
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    bg_threshold: float | None = None
    ignore_band: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        method = str(self.method).strip().lower().replace("_", "-")
        if method not in mask_methods():
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(mask_methods())}")
        set_ = object.__setattr__
        set_(self, "method", method)
        if self.refinement not in _refinements():
            raise ValueError(f"unknown refinement {self.refinement!r}; choose one of {', '.join(_refinements())}")
        for name in ("crf", "flip"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.crf_params, CRFParams):
            raise ValueError(f"crf_params must be a CRFParams, got {type(self.crf_params).__name__}")
        set_(self, "method_options", Options(self.method_options))
        set_(self, "refinement_options", Options(self.refinement_options))
        set_(self, "scales", _scales(self.scales))
        set_(self, "bg_threshold", _threshold(self.bg_threshold))
        set_(self, "ignore_band", _band(self.ignore_band))
        if self.is_segmenter and (self.refinement != "none" or self.bg_threshold is not None or self.ignore_band):
            raise ValueError("seg takes the segmenter's argmax over every class: it has no refinement, "
                             "background threshold or confidence band")
        if self.is_oracle and (self.crf or self.refinement != "none"):
            raise ValueError(f"{ORACLE_METHOD} assigns ground-truth classes to slots; it takes no "
                             f"{'CRF (use --no-crf)' if self.crf else 'refinement'}")
        self._check_method_options()
        self.refiner()  # validates the refinement's options

    # ------------------------------------------------------------------ validation
    def _check_method_options(self) -> None:
        defaults = method_option_defaults(self.method)
        unknown = sorted(set(self.method_options) - set(defaults))
        if unknown:
            raise ValueError(f"{self.method} takes no option {', '.join(unknown)}; its options: "
                             f"{', '.join(defaults) or 'none'}")
        if self.is_oracle:
            block = self.method_options.get("block", -1)
            if isinstance(block, bool) or not isinstance(block, int):
                raise ValueError(f"{ORACLE_METHOD} block must be a whole number, got {block!r}")
            return
        try:
            evidence_class(self.method)(**dict(self.method_options))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.method} options {dict(self.method_options)}: {exc}") from None

    # ------------------------------------------------------------------ names
    @classmethod
    def parse(cls, text: str, **settings: Any) -> MaskRecipe:
        """``"slot-cam+slot-walk+crf"`` -> ``MaskRecipe("slot-cam", "slot-walk", True)`` (``settings``
        set the other fields); a clear ``ValueError`` for an unknown part or one out of place."""
        cleaned = text.strip().lower().replace("_", "-").replace(" ", "")
        methods, refinements = mask_methods(), [r for r in _refinements() if r != "none"]
        # the longest method name that starts the text: "gradcam++" has pluses of its own
        method = next((m for m in sorted(methods, key=len, reverse=True)
                       if cleaned == m or cleaned.startswith(m + "+")), cleaned.split("+")[0])
        rest = [p for p in cleaned[len(method) + 1:].split("+")] if cleaned != method else []
        if method not in methods:
            raise ValueError(f"{text!r}: unknown method {method!r}; choose one of {', '.join(methods)} "
                             f"(then optionally +{'/+'.join(refinements)} and +{CRF})")
        crf = bool(rest) and rest[-1] == CRF
        if crf:
            rest = rest[:-1]
        if len(rest) > 1 or (rest and rest[0] not in refinements):
            raise ValueError(f"{text!r}: after the method comes at most one refinement "
                             f"({', '.join(refinements)}), then optionally +{CRF} (last)")
        return cls(method, rest[0] if rest else "none", crf, **settings)

    @classmethod
    def of(cls, recipe: MaskRecipe | str | None = None, **changes: Any) -> MaskRecipe:
        """``recipe`` (a recipe, its short name, or ``None``: the default slot-cam) with ``changes``
        to its fields; an unknown field is a ``ValueError`` naming the fields."""
        base = cls() if recipe is None else (recipe if isinstance(recipe, MaskRecipe) else cls.parse(recipe))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"a mask recipe has no setting {', '.join(unknown)}; its settings: {', '.join(known)}")
        return replace(base, **changes) if changes else base

    @property
    def name(self) -> str:
        """The canonical short string (what :meth:`parse` reads back; options are not in it)."""
        return "+".join([self.method] + ([self.refinement] if self.refinement != "none" else [])
                        + ([CRF] if self.crf else []))

    @property
    def title(self) -> str:
        """For a figure column: ``slot-CAM + slot walk + CRF``."""
        parts = [METHOD_TITLES.get(self.method, self.method)]
        if self.refinement != "none":
            parts.append(REFINEMENT_TITLES.get(self.refinement, self.refinement))
        if self.crf:
            parts.append("CRF")
        return " + ".join(parts)

    # ------------------------------------------------------------------ what it builds
    @property
    def is_oracle(self) -> bool:
        return self.method == ORACLE_METHOD

    @property
    def is_segmenter(self) -> bool:
        """Whether the method is a segmenter's own prediction (probabilities over every class: ``seg``)."""
        return not self.is_oracle and evidence_class(self.method).probabilities

    @property
    def augments(self) -> bool:
        """Whether test-time augmentation runs more forward passes than the one at scale 1."""
        return self.flip or any(s != 1.0 for s in self.scales)

    @property
    def oracle_block(self) -> int:
        """The GLMix block whose slots the oracle labels."""
        return int(self.method_options.get("block", ORACLE_OPTIONS["block"]))

    def evidence_method(self, class_map: Sequence[Sequence[int]] | None = None) -> Any:
        """The :class:`~glmix_vis.wsss.evidence.EvidenceMethod` with this recipe's options, reading
        the head through ``class_map`` (:attr:`ModelInfo.class_map`)."""
        if self.is_oracle:
            raise ValueError(f"{ORACLE_METHOD} labels slots with ground-truth masks: it has no class evidence "
                             "and exists in `glmix-wsss eval` only")
        return evidence_class(self.method)(class_map=class_map, **dict(self.method_options))

    def refiner(self) -> Any:
        """The :class:`~glmix_vis.wsss.refinement.Refinement` with this recipe's options."""
        from .refinement import get_refinement

        return get_refinement(self.refinement, dict(self.refinement_options))

    def resolved(self, meta: Any) -> MaskRecipe:
        """This recipe with its background threshold decided: the given one, else the value the
        checkpoint's metadata records for the method (``meta``: a
        :class:`~glmix_vis.models.meta.CheckpointMeta`, or a :class:`~glmix_vis.loading.ModelInfo`),
        else IRN's 0.15. The one place the rule is applied."""
        if self.bg_threshold is not None or self.is_segmenter:
            return self
        from .masks import checkpoint_bg_threshold

        return replace(self, bg_threshold=checkpoint_bg_threshold(getattr(meta, "meta", meta), self.method))

    @property
    def threshold(self) -> float:
        """The background threshold of a :meth:`resolved` recipe."""
        if self.bg_threshold is None:
            raise ValueError("this recipe's background threshold is not resolved yet: call .resolved(info)")
        return self.bg_threshold

    def to_dict(self) -> dict[str, Any]:
        """Every setting, as reports (``metrics.json``) show them (JSON types)."""
        settings: dict[str, Any] = dict(
            method=self.method, method_options=dict(self.method_options), refinement=self.refinement,
            refinement_options=self.refiner().settings(), crf=self.crf, crf_params=asdict(self.crf_params),
            scales=[float(s) for s in self.scales], flip=self.flip, bg_threshold=self.bg_threshold,
            ignore_band=list(self.ignore_band) if self.ignore_band else None)
        if self.is_oracle:
            settings["oracle_block"] = self.oracle_block
        return _json(settings)

    def record(self) -> dict[str, Any]:
        """What decides the masks, as ``OUT/settings.json`` stores and compares it (JSON types).

        The keys are those eval has always written, so a folder from an earlier version resumes:
        no refinement keys without a refinement, ``oracle_block`` for the oracle.
        """
        record: dict[str, Any] = dict(method=self.method, scales=[float(s) for s in self.scales], flip=self.flip)
        if self.is_oracle:
            record["oracle_block"] = self.oracle_block
            return _json(record)
        record.update(method_options=dict(self.method_options), bg_threshold=self.bg_threshold, crf=self.crf,
                      crf_params=asdict(self.crf_params) if self.crf else None)
        if self.refinement != "none":
            record.update(refinement=self.refinement, refinement_options=self.refiner().settings())
        if self.ignore_band is not None:  # only when set, so folders from before the band still resume
            record["ignore_band"] = list(self.ignore_band)
        return _json(record)


def _json(record: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(record, default=str))  # the form it is compared in after a reload


def _scales(scales: Any) -> tuple[float, ...]:
    try:
        values = tuple(float(s) for s in (scales if isinstance(scales, Sequence) and not isinstance(scales, str)
                                          else [scales]))
    except (TypeError, ValueError):
        raise ValueError(f"scales must be numbers such as (1.0, 0.5, 1.5), got {scales!r}") from None
    if not values or any(not math.isfinite(s) or s <= 0 for s in values):
        raise ValueError(f"scales must be one or more finite numbers > 0, got {scales!r}")
    return values


def _threshold(value: Any) -> float | None:
    if value is None:
        return None
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"the background threshold must be a number in [0, 1], got {value!r}") from None
    if isinstance(value, bool) or not 0.0 <= t <= 1.0:  # NaN fails the comparison too
        raise ValueError(f"the background threshold must be a number in [0, 1], got {value!r}")
    return t


def _band(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"the confidence band is two numbers (low, high), got {value!r}") from None
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"the confidence band needs 0 <= low < high <= 1, got {value!r}")
    return (low, high)


def parse_assignments(pairs: Sequence[str], defaults: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``["combine=product", "cam_weight=0.3"]`` -> ``{"combine": "product", "cam_weight": 0.3}``: each
    value read as the type of its default (``true``/``false`` for a flag, ``0,1`` for a tuple of
    numbers), names checked against ``defaults``; ``what`` names the owner in errors."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"{what} options are NAME=VALUE, got {pair!r}")
        if key not in defaults:
            raise ValueError(f"{what} takes no option {key!r}; its options: {', '.join(defaults) or 'none'}")
        out[key] = _read_value(text.strip(), defaults[key], f"{what} option {key}")
    return out


def _read_value(text: str, default: Any, what: str) -> Any:
    try:
        if isinstance(default, bool):
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError
            return lowered in ("true", "1", "yes", "on")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, tuple) and default and all(isinstance(v, int) for v in default):
            try:
                return tuple(int(v) for v in text.split(",") if v.strip())
            except ValueError:
                return text  # a named choice such as "all": the option's own check decides
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a {type(default).__name__}") from None
    return text


def parse_recipes(text: str) -> list[MaskRecipe]:
    """A comma-separated list of recipes (``"cam,slot-cam+crf"``); duplicates are an error."""
    recipes = [MaskRecipe.parse(t) for t in text.split(",") if t.strip()]
    if not recipes:
        raise ValueError("no methods given; e.g. cam,slot-cam,slot-cam+slot-walk+crf")
    names = [r.name for r in recipes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"each column once: {', '.join(dupes)} given more than once")
    return recipes
