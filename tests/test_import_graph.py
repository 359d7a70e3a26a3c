"""No import circle among glmix_vis's modules, counting imports inside functions too, and the
layering lines of the architecture map (models know nothing above them)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "glmix_vis"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(current: str, is_package: bool, level: int, module: str | None) -> str:
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _foreign_packages(target: str, importer: str, modules: dict[str, Path]) -> set[str]:
    """Importing ``a.b.c`` runs the ``__init__`` of ``a.b`` first: those packages count as imported,
    except the importer's own (a package importing its modules is the ordinary shape)."""
    parts = target.split(".")
    out = set()
    for k in range(1, len(parts)):
        package = ".".join(parts[:k])
        own = importer == package or importer.startswith(package + ".")
        if package in modules and modules[package].name == "__init__.py" and not own:
            out.add(package)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the glmix_vis modules it imports (module-level and lazy imports alike)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module) if node.level else (node.module or "")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                while t and t not in modules:  # a name inside a module: the module itself
                    t = t.rpartition(".")[0]
                if t.startswith("glmix_vis") and t != name:
                    edges.add(t)
                    edges.update(_foreign_packages(t, name, modules))
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    graph = import_graph()
    assert "glmix_vis.models.glnet" in graph and graph["glmix_vis.predictor"]
    assert _cycles(graph) == []


def test_models_import_nothing_above_them():
    graph = import_graph()
    above = ("glmix_vis.wsss", "glmix_vis.data", "glmix_vis.figures", "glmix_vis.app", "glmix_vis.cli",
             "glmix_vis.predictor", "glmix_vis.loading", "glmix_vis.train")
    bad = {m: sorted(t for t in targets if t.startswith(above))
           for m, targets in graph.items() if m.startswith("glmix_vis.models")}
    assert not {m: t for m, t in bad.items() if t}


def test_the_model_file_imports_no_loader():
    graph = import_graph()
    assert not graph["glmix_vis.models.glnet"] & {"glmix_vis.models.variants", "glmix_vis.models.factory",
                                                     "glmix_vis.models.convert"}
    assert "glmix_vis.models.glnet" not in graph["glmix_vis.models.checkpoints"]


def test_the_library_knows_no_ui():
    graph = import_graph()
    ui = ("glmix_vis.app", "glmix_vis.cli")
    for m, targets in graph.items():
        if not m.startswith(ui):
            assert not [t for t in targets if t.startswith(ui)], m


def test_loading_imports_nothing_from_wsss():
    """``wsss`` builds on ``loading`` (the eval driver loads models), never the other way."""
    graph = import_graph()
    assert not [t for t in graph["glmix_vis.loading"] if t.startswith("glmix_vis.wsss")]


def test_data_imports_no_models_and_no_wsss():
    """Datasets and label spaces (class lists, the ImageNet-to-VOC map) sit below the models."""
    graph = import_graph()
    bad = {m: sorted(t for t in targets if t.startswith(("glmix_vis.models", "glmix_vis.wsss")))
           for m, targets in graph.items() if m.startswith("glmix_vis.data")}
    assert not {m: t for m, t in bad.items() if t}


def test_importing_the_package_imports_no_torch():
    """The package's names load on first use, so a command parses its arguments before torch loads."""
    import subprocess
    import sys

    code = ("import sys, glmix_vis; assert 'torch' not in sys.modules, 'torch'; "
            "assert set(glmix_vis.__all__) <= set(dir(glmix_vis)); print(glmix_vis.__version__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_package_names_load_on_first_use():
    import glmix_vis

    for name in glmix_vis.__all__:
        assert getattr(glmix_vis, name) is not None
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        glmix_vis.nothing  # noqa: B018
