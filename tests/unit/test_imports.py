"""Dependencies point one way: no import cycle between polyhead's packages, and each imports on its own.

The graph is read from the AST of src/polyhead at package granularity: a unit is a subpackage
(`polyhead.data`, `polyhead.training`, ...) or a top-level module (`polyhead.tracking`, `polyhead.cli`).
Imports inside functions count as much as module-level ones: a function-level import still couples the two
packages (it only defers the failure), and it is how the train <-> export cycle used to hide.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "polyhead"


def unit_of(module: str) -> str:
    """`polyhead.training.callbacks.state` -> `polyhead.training`; `polyhead.cli` -> `polyhead.cli`."""
    return ".".join(module.split(".")[:2])


def module_name(path: Path) -> tuple[str, list[str]]:
    """The dotted name of a source file and the package its relative imports start from."""
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), parts[:-1]
    return ".".join(parts), parts[:-1]


def imported_modules(tree: ast.AST, package: list[str]) -> list[tuple[str, int]]:
    """Every polyhead module an `import` or `from ... import` anywhere in the tree names, with its line."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            found.append((".".join(base + ([node.module] if node.module else [])), node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, node.lineno))
    return [(name, line) for name, line in found if name.startswith("polyhead.")]


def import_graph() -> dict[str, dict[str, list[str]]]:
    """unit -> unit it imports -> the `file:line` places that import it."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(SOURCE.rglob("*.py")):
        name, package = module_name(path)
        for target, line in imported_modules(ast.parse(path.read_text()), package):
            if unit_of(name) != unit_of(target) and unit_of(name) != "polyhead":
                graph[unit_of(name)][unit_of(target)].append(f"{path.relative_to(SOURCE.parent)}:{line}")
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components with more than one unit (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(graph, component: list[str]) -> str:
    edges = [
        f"  {a} -> {b}  ({', '.join(graph[a][b])})" for a in component for b in component if b in graph[a]
    ]
    return "\n".join([" <-> ".join(component), *edges])


def units() -> list[str]:
    """Every subpackage and top-level module of polyhead."""
    found = {unit_of(module_name(p)[0]) for p in SOURCE.rglob("*.py")}
    return sorted(found - {"polyhead"})


# The direction docs/layout.md draws, lowest first: a unit imports only units of lower layers. The small
# shared modules sit between data and models, tracking (which tags runs with the hardware) beside models;
# export (spaCy components, checkpoint loading) stands on models alone, below training, whose run ends by
# exporting the tested model; pretrain and distill build on training.
LAYERS = (
    ("polyhead.tokens",),
    ("polyhead.data",),
    ("polyhead.errors",),  # its UserError check knows data's CorpusError
    (
        "polyhead.cache",
        "polyhead.cli",
        "polyhead.config",
        "polyhead.hardware",
        "polyhead.metrics",
        "polyhead.plots",
    ),
    ("polyhead.models", "polyhead.tracking"),
    ("polyhead.export", "polyhead.report"),
    ("polyhead.evaluate", "polyhead.prepare", "polyhead.study", "polyhead.training"),
    ("polyhead.pretrain",),
    ("polyhead.distill",),
)


def test_imports_graph_sees_known_edges():
    graph = import_graph()
    assert "polyhead.data" in graph["polyhead.models"], "the heads import data.schema"
    assert "polyhead.export" in graph["polyhead.training"], "train exports the tested model"
    assert "polyhead.training" in graph["polyhead.pretrain"], "pretraining runs on the training Trainer"
    assert "polyhead.report" in graph["polyhead.study"], "a study's page is built from its report"


def test_imports_point_down_the_layers():
    layer = {unit: i for i, layer_units in enumerate(LAYERS) for unit in layer_units}
    assert sorted(layer) == units(), "every package and top-level module has one place in LAYERS"
    graph = import_graph()
    upward = [
        f"  {a} -> {b}  ({', '.join(graph[a][b])})" for a in graph for b in graph[a] if layer[b] >= layer[a]
    ]
    assert not upward, "imports that do not point down the layers:\n" + "\n".join(upward)


def test_imports_no_cycle_between_packages():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles between polyhead packages:\n" + "\n".join(
        describe(graph, component) for component in found
    )


def unit_modules(unit: str) -> list[str]:
    """Every module of a subpackage (its __main__ aside: importing that runs the command), or the module."""
    directory = SOURCE.parent / unit.replace(".", "/")
    files = sorted(directory.rglob("*.py")) if directory.is_dir() else []
    return [module_name(p)[0] for p in files if p.stem != "__main__"] or [unit]


# One interpreter imports the third-party libraries once, then forks a child per unit that imports the
# unit's modules with no polyhead module loaded yet: isolation from the rest of polyhead, in seconds rather
# than a fresh torch + Lightning import per unit (the slow test below does exactly that).
FORK_EACH_UNIT = r"""
import importlib, json, os, sys, traceback
for name in ("torch", "pytorch_lightning", "transformers", "spacy", "hydra", "omegaconf", "mlflow"):
    importlib.import_module(name)
assert not [n for n in sys.modules if n.split(".")[0] == "polyhead"], "a library imported polyhead"
results = {}
for arg in sys.argv[1:]:
    unit, modules = arg.split("=")
    read, write = os.pipe()
    if os.fork() == 0:
        try:
            for name in modules.split(","):
                importlib.import_module(name)
            message = ""
        except BaseException:
            message = traceback.format_exc()
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        results[unit] = pipe.read()
    os.wait()
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def isolated_imports() -> dict[str, str]:
    """unit -> the traceback of importing its modules in a fresh child ("" when they import)."""
    args = [f"{unit}={','.join(unit_modules(unit))}" for unit in units()]
    out = subprocess.run([sys.executable, "-c", FORK_EACH_UNIT, *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a child per package")
@pytest.mark.parametrize("unit", units())
def test_imports_package_imports_in_isolation(unit: str, isolated_imports):
    assert isolated_imports[unit] == "", f"importing {unit} on its own fails:\n{isolated_imports[unit]}"


@pytest.mark.slow
@pytest.mark.parametrize("unit", units())
def test_imports_package_imports_in_a_fresh_interpreter(unit: str):
    """`python -c "import polyhead.X"` for every module of the unit, nothing preloaded."""
    code = "; ".join(f"import {name}" for name in unit_modules(unit))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, f"importing {unit} on its own fails:\n{out.stderr[-3000:]}"


def test_imports_spacy_pipelines_without_polyhead_components_import_spacy_alone():
    """spaCy imports every `spacy_factories` entry point whenever it builds a Language: with polyhead
    installed, a blank (or any non-polyhead) pipeline loads polyhead's factories and nothing heavier."""
    code = (
        "import json, sys, spacy; nlp = spacy.blank('en'); nlp.add_pipe('sentencizer'); "
        "print(json.dumps(sorted(n for n in sys.modules if n.split('.')[0] in ('polyhead', 'transformers'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "polyhead.export.factories" in loaded, "the entry points no longer name polyhead.export.factories"
    assert loaded == ["polyhead", "polyhead.export", "polyhead.export.factories"], loaded
