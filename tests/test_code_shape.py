"""Shape rules of the library's code that a reviewer would otherwise check by hand."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "glmix_vis"
#: The longest a library function may be, in lines (a timm model's constructor lists its layers).
MAX_FUNCTION_LINES = 80
EXEMPT = {("glmix_vis/models/glnet.py", "GLNet.__init__")}


def _functions(tree: ast.AST, prefix: str = ""):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield f"{prefix}{node.name}", node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")


def test_no_library_function_is_over_80_lines() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE.parent))
        for name, node in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES and (rel, name) not in EXEMPT:
                long.append(f"{rel}:{node.lineno} {name} ({lines} lines)")
    assert not long, "\n".join(long)


def test_pseudo_mask_takes_at_most_six_parameters() -> None:
    """One recipe instead of a dozen forwarded settings (issue 21)."""
    from glmix_vis.predictor import SlotPredictor
    from glmix_vis.wsss.pipeline import pseudo_mask

    for fn in (pseudo_mask, SlotPredictor.pseudo_mask):
        assert len(inspect.signature(fn).parameters) <= 6, fn
