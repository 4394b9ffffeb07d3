"""The package's shape, checked: layers that import only downwards, no circle, small units.

innet is a stack of layers (docs/architecture.md)::

    app          the command line, the Python API, the runner, sweeps, retime
    families     what the nodes learn: inl (its engine), moe, finite_bank
    report       tables, summary, statistics, Markdown, figures
    rundir       the run directory: its files and tables, read and written
    info, distributed   estimators and bounds; torch.distributed processes
    core         topology, plans, events, phases, records, network model, transport

A module imports only from its own layer or the layers below it, and no set of
modules imports each other in a loop. Every import counts, wherever it stands:
at the top, inside a function, or under ``if TYPE_CHECKING:``. ``innet.testing``
(test-only references) and the package's ``__init__``/``__main__`` stand above
everything. And no function is more complex than 15 (radon's cyclomatic
complexity) unless a comment on its ``def`` line says why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest
from radon.complexity import cc_visit

PACKAGE = Path(__file__).resolve().parent.parent / "innet"
LAYERS = {
    "core": 0,
    "info": 1,
    "distributed": 1,
    "rundir": 2,
    "report": 3,
    "families": 4,
    "app": 5,
    "testing": 6,
}
TOP = 7  # innet/__init__.py and innet/__main__.py
MAX_COMPLEXITY = 15


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 and parts[1] in LAYERS else TOP


def imported(module: str, tree: ast.AST) -> set[str]:
    """The innet modules that ``module`` imports, anywhere in its code."""
    found: set[str] = set()
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {name for name in found if name in MODULES and name != module}


GRAPH = nx.DiGraph()
for _module, _path in MODULES.items():
    GRAPH.add_node(_module)
    for _target in imported(_module, ast.parse(_path.read_text())):
        GRAPH.add_edge(_module, _target)


def test_every_layer_is_known() -> None:
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    assert packages == set(LAYERS)
    assert len(MODULES) > 100  # the walk found the package


def test_no_import_runs_up_the_stack() -> None:
    upward = sorted(
        f"{source} -> {target}" for source, target in GRAPH.edges if layer(target) > layer(source)
    )
    assert upward == []


def test_no_import_circle() -> None:
    circles = [sorted(part) for part in nx.strongly_connected_components(GRAPH) if len(part) > 1]
    assert circles == []


def test_the_checks_see_what_they_check() -> None:
    """The graph holds function-level and TYPE_CHECKING imports, so a circle there counts."""
    code = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from innet.app.cli import main\n"
    )
    code += "def f():\n    from innet.core import plans\n"
    assert imported("innet.core.errors", ast.parse(code)) == {"innet.app.cli", "innet.core.plans"}
    assert layer("innet.app.cli") > layer("innet.core.errors")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_function_above_the_complexity_limit(module: str) -> None:
    source = MODULES[module].read_text()
    lines = source.splitlines()
    too_complex = [
        f"{block.fullname} (line {block.lineno}): {block.complexity}"
        for block in cc_visit(source)
        if block.complexity > MAX_COMPLEXITY and "complexity:" not in lines[block.lineno - 1]
    ]
    assert too_complex == []
