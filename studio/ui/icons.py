"""Button icons as SVG files (assets/icons/), so no label depends on an emoji font being installed."""

from __future__ import annotations

from pathlib import Path

ICONS_DIR = Path(__file__).resolve().parents[2] / "assets" / "icons"


def icon(name: str) -> str:
    """The path of icon `name` (e.g. "stop"), for gr.Button(icon=…); FileNotFoundError names the known ones."""
    path = ICONS_DIR / f"{name}.svg"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in ICONS_DIR.glob("*.svg")))
        raise FileNotFoundError(f"No icon {name!r} in {ICONS_DIR}; known: {known}")
    return str(path)
