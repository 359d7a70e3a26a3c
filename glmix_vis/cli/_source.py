"""Names and defaults the parsers show, read from the library's source without importing it.

The modules that own them (the WSSS settings, the trainers, the model table) import torch, seconds
long; ``--help``, ``--version`` and every argument error must answer before any of that runs. So
the parsers read the owners' source text here instead of importing them: the owner stays the one
place a default or a name is written (``tests/test_cli_startup.py`` checks every value read here
against the imported module). Only literal values are read: a default written as an expression is
an error at test time, not a guess.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

__all__ = ["constant", "dataclass_defaults", "dict_keys", "evidence_methods", "registered_names"]

_PACKAGE = Path(__file__).resolve().parents[1]


def _path(module: str) -> Path:
    """``glmix_vis.wsss.par`` -> its file, found without importing a package ``__init__``."""
    parts = module.split(".")[1:]
    base = _PACKAGE.joinpath(*parts)
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


@cache
def _tree(module: str) -> ast.Module:
    return ast.parse(_path(module).read_text(encoding="utf-8"))


def _assigned(module: str) -> dict[str, ast.expr]:
    """Module-level ``NAME = value`` and ``NAME: T = value``."""
    out: dict[str, ast.expr] = {}
    for node in _tree(module).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            out[node.target.id] = node.value
    return out


def _value(module: str, node: ast.expr) -> Any:
    """A literal, or a module-level name bound to one, or a tuple of those."""
    if isinstance(node, ast.Name):
        bound = _assigned(module).get(node.id)
        if bound is None:
            raise ValueError(f"{module}: {node.id} is not a module-level constant")
        return _value(module, bound)
    if isinstance(node, ast.Tuple):
        return tuple(_value(module, e) for e in node.elts)
    return ast.literal_eval(node)


def constant(module: str, name: str) -> Any:
    """The literal value of ``module.name``."""
    node = _assigned(module).get(name)
    if node is None:
        raise ValueError(f"{module} has no module-level {name}")
    return _value(module, node)


def dict_keys(module: str, name: str) -> list[str]:
    """The keys of the dict literal ``module.name`` (its values may be anything)."""
    node = _assigned(module).get(name)
    if not isinstance(node, ast.Dict):
        raise ValueError(f"{module}.{name} is not a dict literal")
    return [ast.literal_eval(k) for k in node.keys if k is not None]


def dataclass_defaults(module: str, cls: str) -> SimpleNamespace:
    """The literal defaults of the fields of the dataclass ``module.cls``, as attributes (what
    ``cls()`` would hold; fields without a default, or with a ``field(...)`` one, are left out)."""
    for node in _tree(module).body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            out = {}
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
                    try:
                        out[item.target.id] = _value(module, item.value)
                    except ValueError:
                        continue
            return SimpleNamespace(**out)
    raise ValueError(f"{module} has no class {cls}")


def registered_names(package: str, decorator: str) -> list[str]:
    """The names a package's modules register with ``@decorator("name")``, sorted."""
    names = set()
    for path in sorted(_path(package).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef | ast.FunctionDef):
                for deco in node.decorator_list:
                    if (isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == decorator
                            and deco.args and isinstance(deco.args[0], ast.Constant)):
                        names.add(deco.args[0].value)
    return sorted(names)


def evidence_methods() -> list[str]:
    """Every evidence method name: those the package's sources register, and, once the registry is
    loaded (a program that registered its own), every name registered since."""
    names = set(registered_names("glmix_vis.wsss.evidence", "register_evidence"))
    registry = sys.modules.get("glmix_vis.wsss.evidence.base")
    if registry is not None:
        names.update(registry.available_evidence_methods())
    return sorted(names)
