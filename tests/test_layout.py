"""The package's shape: no import cycle between harness modules (lazy imports inside functions
included), no function of 60 lines or more, and the README's layout section names every module."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "harness"
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The harness modules `path` imports anywhere in it (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in out if m in modules and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(path, name, modules) for name, path in modules.items()}
    assert graph["harness.dispatch.worker"] >= {"harness.training.trainer", "harness.store.records"}  # the reader works
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_lazy_cycle(tmp_path: Path) -> None:
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from harness.b import x\n")
    modules = {"harness.a": a, "harness.b": tmp_path / "b.py"}
    (tmp_path / "b.py").write_text("from harness.a import f\n")
    graph = {n: _imports(p, n, modules) for n, p in modules.items()}
    assert _cycle(graph) == ["harness.a", "harness.b", "harness.a"]


def test_no_long_function() -> None:
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if n >= MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions of 60 lines or more: " + "; ".join(long)


def test_readme_layout_names_every_module() -> None:
    text = (REPO / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    missing = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p.name != "__init__.py" and f"`{p.relative_to(PACKAGE).with_suffix('')}`" not in layout]
    assert not missing, f"README's layout section does not name: {', '.join(sorted(missing))}"


# the layers, bottom up: a subpackage imports only those below it (harness/ top-level modules:
# errors and files at the bottom, api on top); the README's layout table lists them in this order
LAYERS = ("harness.errors", "harness.files", "harness.resources", "harness.job", "harness.search",
          "harness.training", "harness.units", "harness.store", "harness.dispatch", "harness.stats",
          "harness.reporting", "harness.api", "harness.cli")


def _layer(module: str) -> int:
    return max(i for i, prefix in enumerate(LAYERS) if module == prefix or module.startswith(prefix + "."))


def test_subpackages_import_only_layers_below() -> None:
    modules = _modules()
    up = sorted(f"{name} -> {dep}" for name, path in modules.items() if name not in ("harness", "harness.__main__")
                for dep in _imports(path, name, modules)
                if dep not in ("harness", "harness.__main__") and _layer(dep) > _layer(name))
    assert not up, "imports that point up the layers: " + "; ".join(up)


def test_readme_layout_lists_the_layers_in_order() -> None:
    text = (REPO / "README.md").read_text()
    table = text[text.index("## Layout"):].split("\n\n")[2]
    rows = [line.split("|")[1].strip().strip("`").rstrip("/").replace("/", ".") for line in table.splitlines()[2:]]
    assert [r for r in rows if r in LAYERS] == [layer for layer in LAYERS if layer in rows], rows
