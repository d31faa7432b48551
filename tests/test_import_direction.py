"""Layers point one way: ``dece.pipeline`` composes defenses, training and metrics, so none of
those imports ``dece.pipeline`` (absolute or relative, at module level or inside a function).
An import under ``if TYPE_CHECKING:`` is allowed: it names a type for annotations and never runs
(a defense's ``prepare(bundle: DataBundle, ...)``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LOWER_LAYERS = ("defenses", "training", "metrics")
UPPER = "dece.pipeline"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` names (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in ``path`` outside ``if TYPE_CHECKING:``;
    ``from X import y`` also counts as importing ``X.y`` (``from dece import pipeline``)."""
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node, module, is_package)
            found.append((node.lineno, target))
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Call) and _dynamic_import(node) is not None:
            found.append((node.lineno, _dynamic_import(node)))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _dynamic_import(node: ast.Call) -> str | None:
    """The constant module name of ``importlib.import_module("...")`` / ``__import__("...")``."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def _points_up(name: str) -> bool:
    return name == UPPER or name.startswith(UPPER + ".")


@pytest.mark.parametrize("layer", LOWER_LAYERS)
def test_lower_layers_never_import_the_pipeline(layer):
    files = sorted((SRC / "dece" / layer).rglob("*.py"))
    assert files, f"no modules under src/dece/{layer}"
    bad = [
        f"{path.relative_to(SRC)}:{line}: {name}"
        for path in files
        for line, name in runtime_imports(path)
        if _points_up(name)
    ]
    assert bad == [], "imports of dece.pipeline from a lower layer:\n" + "\n".join(bad)


# ------------------------------------------------------------------ the checker's own oracle
CASES = {
    "import dece.pipeline": True,
    "import dece.pipeline.fit as f": True,
    "from dece.pipeline.data import DataBundle": True,
    "from dece import pipeline": True,
    "from ..pipeline import run": True,  # from dece/training/x.py
    "from ...pipeline import run": False,  # above dece: not the package
    "def f():\n    from dece.pipeline import train": True,
    "import importlib\nimportlib.import_module('dece.pipeline.run')": True,
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dece.pipeline import X": False,
    "if TYPE_CHECKING:\n    pass\nelse:\n    from dece.pipeline import X": True,
    "from dece.pipelines import x": False,
    "from dece.training import pipeline_helpers": False,
    "from . import collate": False,
}


@pytest.mark.parametrize(("source", "flagged"), list(CASES.items()))
def test_checker_flags_exactly_the_upward_imports(tmp_path, monkeypatch, source, flagged):
    path = tmp_path / "dece" / "training" / "x.py"
    path.parent.mkdir(parents=True)
    path.write_text(source + "\n", encoding="utf-8")
    monkeypatch.setitem(globals(), "SRC", tmp_path)
    assert any(_points_up(name) for _, name in runtime_imports(path)) is flagged


def test_importing_the_lower_layers_loads_no_pipeline_module():
    """The same rule at run time, in a fresh interpreter: importing defenses (whose package
    imports every registered defense module), training and metrics leaves ``dece.pipeline``
    unloaded."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, dece.training, dece.defenses, dece.metrics\n"
        "print(sorted(m for m in sys.modules if m == 'dece.pipeline' "
        "or m.startswith('dece.pipeline.')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=300)  # fmt: skip
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
