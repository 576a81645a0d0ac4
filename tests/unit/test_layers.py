"""Imports point down only (DESIGN §2): checked on the source, so a violation fails CI."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

STUDIO = Path(__file__).resolve().parents[2] / "studio"

# package → studio packages it must not import
FORBIDDEN = {
    "core": {"config", "engines", "families", "store", "exports", "tasks", "ui", "services", "cli", "launcher", "images"},
    "engines": {"tasks", "ui", "services", "store", "exports", "cli", "launcher"},
    "families": {"tasks", "ui", "services", "store", "exports", "cli", "launcher", "engines"},
    "store": {"tasks", "ui", "services", "engines", "families", "cli", "launcher"},
    "exports": {"tasks", "ui", "services", "engines", "families", "store", "cli", "launcher"},
    "tasks": {"ui", "cli", "launcher", "models_cli"},
    "api": {"ui", "cli", "launcher"},
    "sources": {"tasks", "ui", "services", "store", "exports", "cli", "launcher", "engines"},
    "hub": {"tasks", "ui", "services", "store", "exports", "cli", "launcher", "engines", "families", "api", "sources",
            "tools", "models_cli"},
    "tools": {"tasks", "ui", "services", "store", "exports", "cli", "launcher", "engines", "families", "api",
              "sources"},
}
# module → studio packages it may import although its package may not.
EXCEPTIONS: dict[str, set[str]] = {}
HEAVY = {"torch", "transformers", "gguf", "accelerate", "lmdeploy", "openai", "sentence_transformers"}


def imports(path: Path, top_level_only: bool = False):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def modules(root: Path = STUDIO) -> list[Path]:
    return sorted(root.rglob("*.py"))


def test_layers_point_down():
    bad = []
    for path in modules():
        rel = path.relative_to(STUDIO).parts
        layer = rel[0].removesuffix(".py")
        forbidden = FORBIDDEN.get(layer, set()) - EXCEPTIONS.get("/".join(rel), set())
        for name in imports(path):
            parts = name.split(".")
            if parts[0] == "studio" and len(parts) > 1 and parts[1] in forbidden:
                bad.append(f"{path.relative_to(STUDIO)} imports {name}")
    assert bad == []


def test_only_ui_imports_gradio():
    bad = [str(p.relative_to(STUDIO)) for p in modules()
           if p.relative_to(STUDIO).parts[0] != "ui" and any(n.split(".")[0] == "gradio" for n in imports(p))]
    assert bad == []


def test_heavy_libraries_are_imported_lazily():
    bad = []
    for path in modules():
        for name in imports(path, top_level_only=True):
            if name.split(".")[0] in HEAVY:
                bad.append(f"{path.relative_to(STUDIO)} imports {name} at module level")
    assert bad == []


def test_import_studio_without_heavy_libraries():
    import subprocess
    import sys

    code = ("import sys, studio.config, studio.services, studio.tasks.chat, studio.cli, studio.engines, studio.families;"
            "print(sorted(m for m in %r if m in sys.modules))" % sorted(HEAVY))
    out = subprocess.run([sys.executable, "-c", code], cwd=STUDIO.parent, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def module_name(path: Path, root: Path) -> str:
    """studio/tasks/chat.py → studio.tasks.chat; studio/api/__init__.py → studio.api."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The studio modules `path` (module `name`) imports anywhere in it, functions included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: level 1 is this package, each further level one package up
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)  # `from pkg import x` runs pkg and reads x from it
            found.update(f"{base}.{alias.name}" for alias in node.names)  # x may be a submodule
    return (found & known) - {name}


def import_graph(root: Path = STUDIO) -> dict[str, set[str]]:
    """Every module under `root` (the studio package) → the modules of it that it imports."""
    paths = {module_name(path, root): path for path in modules(root)}
    return {name: imported_modules(path, name, set(paths)) for name, path in paths.items()}


def strongly_connected(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """Tarjan's algorithm: each group of modules that import each other (directly or round about)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> Iterator[list[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                yield from visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:  # node is the root of a component: pop it
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            yield sorted(group)

    for node in sorted(graph):
        if node not in index:
            yield from visit(node)


def test_strongly_connected_finds_cycles_and_only_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d", "f"}, "f": {"e"}, "g": {"a"}}
    groups = [group for group in strongly_connected(graph) if len(group) > 1]
    assert sorted(groups) == [["a", "b", "c"], ["e", "f"]]


def test_import_graph_counts_lazy_relative_and_submodule_imports(tmp_path):
    pkg = tmp_path / "studio" / "pkg"
    pkg.mkdir(parents=True)
    (tmp_path / "studio" / "__init__.py").write_text("")
    (tmp_path / "studio" / "top.py").write_text("def later():\n    from studio.pkg import child\n")
    (pkg / "__init__.py").write_text("from .child import thing\n")
    (pkg / "child.py").write_text("from .. import top\nimport os\nthing = 1\n")
    assert import_graph(tmp_path / "studio") == {
        "studio": set(),
        "studio.top": {"studio.pkg", "studio.pkg.child"},
        "studio.pkg": {"studio.pkg.child"},
        "studio.pkg.child": {"studio", "studio.top"},
    }


def test_no_import_cycles():
    graph = import_graph()
    cycles = [group for group in strongly_connected(graph) if len(group) > 1]
    report = []
    for group in cycles:
        report.append("{" + ", ".join(group) + "}")
        report += [f"    {name} imports {', '.join(sorted(graph[name] & set(group)))}" for name in group]
    assert not cycles, "modules that import each other; break each cycle:\n" + "\n".join(report)
