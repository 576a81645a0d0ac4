"""A user tool file for agent tests: the typed, documented function a learner would write."""

from __future__ import annotations

from pathlib import Path

TOOL_FILE = '''\
def add(a: int, b: int) -> int:
    """Add two whole numbers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b
'''


def write_tools_folder(folder: Path) -> Path:
    """`folder` holding maths.py (the `add` tool); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "maths.py").write_text(TOOL_FILE, encoding="utf-8")
    return folder
