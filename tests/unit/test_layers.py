"""Imports point down only (DESIGN §2): checked on the source, so a violation fails CI."""

from __future__ import annotations

import ast
from pathlib import Path

STUDIO = Path(__file__).resolve().parents[2] / "studio"

# package → studio packages it must not import
FORBIDDEN = {
    "core": {"config", "engines", "families", "store", "exports", "tasks", "ui", "services", "cli", "launcher", "images"},
    "engines": {"tasks", "ui", "services", "store", "exports", "cli", "launcher"},
    "families": {"tasks", "ui", "services", "store", "exports", "cli", "launcher", "engines"},
    "store": {"tasks", "ui", "services", "engines", "families", "cli", "launcher"},
    "exports": {"tasks", "ui", "services", "engines", "families", "store", "cli", "launcher"},
    "tasks": {"ui", "cli", "launcher"},
    "api": {"ui", "cli", "launcher"},
    "sources": {"tasks", "ui", "services", "store", "exports", "cli", "launcher", "engines"},
}
HEAVY = {"torch", "transformers", "gguf", "accelerate", "lmdeploy", "openai", "sentence_transformers"}


def imports(path: Path, top_level_only: bool = False):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def modules():
    return [p for p in STUDIO.rglob("*.py")]


def test_layers_point_down():
    bad = []
    for path in modules():
        rel = path.relative_to(STUDIO).parts
        layer = rel[0].removesuffix(".py")
        for name in imports(path):
            parts = name.split(".")
            if parts[0] == "studio" and len(parts) > 1 and parts[1] in FORBIDDEN.get(layer, set()):
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
