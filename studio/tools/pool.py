"""The agent's tools for each conversation: its own interpreter (one sandboxed child), ArXiv, user tools."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any, Optional

from studio.tools.base import Tool


def _key(user_id: str, conversation_id: str) -> str:
    return hashlib.sha256(f"{user_id}\0{conversation_id}".encode()).hexdigest()[:32]


class ToolPool:
    """App-scoped: one interpreter per conversation (state survives between its calls), closed at exit."""

    def __init__(self, root: Path, tool_files: list, arxiv_url: Optional[str], timeout_s: float) -> None:
        self.root, self.tool_files, self.arxiv_url, self.timeout_s = Path(root), tool_files, arxiv_url, timeout_s
        # Figures are kept with the conversation (served to the page from here), apart from the interpreters'
        # folders, which hold the code's own files.
        self.figures_root = self.root.parent / "agent-figures"
        self._interpreters: dict[str, Any] = {}
        self._lock = threading.Lock()

    def interpreter(self, user_id: str, conversation_id: str):
        """The conversation's interpreter (started on its first call), in a 0700 folder of its own."""
        from studio.tools.interpreter import Interpreter
        from studio.tools.sandbox import Limits

        key = _key(user_id, conversation_id)
        with self._lock:
            if key not in self._interpreters:
                for path in (self.root, self.root / key):  # private: the code and its files are the user's
                    path.mkdir(mode=0o700, parents=True, exist_ok=True)
                    path.chmod(0o700)
                folder = self.root / key
                self._interpreters[key] = Interpreter(folder, Limits(wall_s=self.timeout_s))
            return self._interpreters[key]

    def tools(self, user_id: str, conversation_id: str, names: tuple[str, ...], interpreter: bool) -> dict[str, Tool]:
        """The tools enabled for one call of the agent, by name (the interpreter is "python")."""
        out: dict[str, Tool] = {}
        if interpreter:
            out["python"] = self.interpreter(user_id, conversation_id)
        if self.arxiv_url and "arxiv_search" in names:
            from studio.tools.arxiv import ArxivSearch

            out["arxiv_search"] = ArxivSearch(base_url=self.arxiv_url)
        for path, spec in self.tool_files:
            if spec.name in names:
                from studio.tools.user_tool import UserTool

                out[spec.name] = UserTool(spec, path, self.interpreter(user_id, conversation_id))
        return out

    def save_figure(self, user_id: str, conversation_id: str, name: str, data: bytes) -> Path:
        """Keep one figure a tool made, in the conversation's private folder; its path."""
        folder = self.figures_root / _key(user_id, conversation_id)
        for path in (self.figures_root, folder):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.chmod(0o700)
        target = folder / name
        with open(target, "wb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW, 0o600)) as f:
            f.write(data)
        return target

    def names(self) -> list[str]:
        """Every plugin tool the config offers (the interpreter aside)."""
        return (["arxiv_search"] if self.arxiv_url else []) + [spec.name for _, spec in self.tool_files]

    def forget(self, user_id: str, conversation_id: str) -> None:
        """Stop a conversation's interpreter (its variables are gone)."""
        with self._lock:
            interp = self._interpreters.pop(_key(user_id, conversation_id), None)
        if interp is not None:
            interp.close()

    def close(self) -> None:
        """Stop every interpreter."""
        with self._lock:
            interps, self._interpreters = list(self._interpreters.values()), {}
        for interp in interps:
            interp.close()
