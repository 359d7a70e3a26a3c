"""How one pseudo-mask is made, as one short string: ``method[+refinement][+crf]``.

``slot-cam``, ``slot-cam+crf``, ``cam+par``, ``slot-cam+slot-walk+crf``: the evidence method
(:func:`~glmix_vis.wsss.evidence.available_evidence_methods`), then optionally a training-free
refinement of its class evidence (:data:`~glmix_vis.wsss.refinement.REFINEMENTS`),
then optionally the dense CRF, always last. The figure CLI's ``--methods`` and the method
benchmark name their columns this way, so a column of a figure and a row of a table that carry
the same name were made the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from .evidence import available_evidence_methods

__all__ = ["MaskRecipe", "parse_recipes", "METHOD_TITLES", "REFINEMENT_TITLES"]

#: How a person writes each method's name in a figure.
METHOD_TITLES = {"cam": "CAM", "slot-cam": "slot-CAM", "token": "token", "gradcam": "Grad-CAM",
                 "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM", "layercam": "LayerCAM",
                 "eigencam": "EigenCAM", "scorecam": "Score-CAM"}
REFINEMENT_TITLES = {"par": "PAR", "slot-walk": "slot walk"}
CRF = "crf"


@dataclass(frozen=True)
class MaskRecipe:
    """An evidence method, an optional refinement (``"none"``: without) and whether the CRF follows."""

    method: str
    refinement: str = "none"
    crf: bool = False

    @classmethod
    def parse(cls, text: str) -> MaskRecipe:
        """``"slot-cam+slot-walk+crf"`` -> ``MaskRecipe("slot-cam", "slot-walk", True)``; a clear
        ``ValueError`` for an unknown part or one out of place."""
        from .refinement import REFINEMENTS  # imported here: the refinements import torch-heavy code

        parts = [p.strip().lower().replace("_", "-") for p in text.split("+")]
        methods, refinements = available_evidence_methods(), [r for r in REFINEMENTS if r != "none"]
        method, rest = parts[0], parts[1:]
        if method not in methods:
            raise ValueError(f"{text!r}: unknown method {method!r}; choose one of {', '.join(methods)} "
                             f"(then optionally +{'/+'.join(refinements)} and +{CRF})")
        crf = bool(rest) and rest[-1] == CRF
        if crf:
            rest = rest[:-1]
        if len(rest) > 1 or (rest and rest[0] not in refinements):
            raise ValueError(f"{text!r}: after the method comes at most one refinement "
                             f"({', '.join(refinements)}), then optionally +{CRF} (last)")
        return cls(method, rest[0] if rest else "none", crf)

    @property
    def name(self) -> str:
        """The canonical string (what :meth:`parse` reads back)."""
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
