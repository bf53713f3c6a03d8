"""The floors of the code base: nothing imports upward, nothing imports in a circle, and
``import scythe_oo`` loads no heavy library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import grimp

import scythe_oo

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "scythe_oo"
HEAVY = ("pandas", "pyarrow", "numpy", "boto3", "botocore", "hatchet_sdk", "grpc", "pydantic")


def test_import_loads_no_heavy_module() -> None:
    code = (
        "import json, sys; import scythe_oo; "
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert json.loads(result.stdout) == []


def test_every_public_name_resolves_and_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in scythe_oo.__all__:
        assert getattr(scythe_oo, name) is not None
        assert f"`{name}" in readme or name.startswith("__"), f"{name} is not in the README"
    assert set(scythe_oo.__all__) <= set(dir(scythe_oo))


def test_the_version_has_one_source() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{scythe_oo.__version__}"' in pyproject
    sources = [p for p in PACKAGE.rglob("*.py") if '"0.1.0"' in p.read_text()]
    assert sources == []


def test_the_layer_contracts_hold() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_the_import_graph_has_no_cycle() -> None:
    graph = grimp.build_graph("scythe_oo", exclude_type_checking_imports=False)
    cycles = [component for component in _strongly_connected(graph) if len(component) > 1]
    assert cycles == []


def test_imports_inside_functions_are_commented_lazy_backends() -> None:
    """An import inside a function is only for a heavy, optional backend, and says so."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    line = lines[inner.lineno - 1]
                    found.append((path.relative_to(ROOT).as_posix(), "#" in line))
    assert all(commented for _, commented in found), found


def _strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm over the module graph, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components
