"""A tool from the user's own tool file, run inside the conversation's sandboxed interpreter."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from studio.tools.base import ToolResult, ToolSpec
from studio.tools.schemas import check_arguments
from studio.tools.user_tools import call_code, read_call_output


class UserTool:
    """`spec` from the file (read, never imported, by the server); a call runs the function in the interpreter."""

    def __init__(self, spec: ToolSpec, path: Path, interpreter: Any) -> None:
        self.spec, self.path, self.interpreter = spec, Path(path), interpreter

    def run(self, arguments: Any, cancel: threading.Event) -> ToolResult:
        """Check the arguments against the schema, then call the function in the sandbox."""
        problems = check_arguments(self.spec, arguments)
        if problems:
            return ToolResult(error=f"{self.spec.name}: " + "; ".join(problems))
        # The sandbox may read only its own folder: the file is copied in (a fresh copy each call).
        name = self.interpreter.add_file(self.path, f"tool_{self.path.name}")
        result = self.interpreter.run(call_code(self.interpreter.folder / name, self.spec.name, arguments), cancel)
        if result.error:
            return result
        out = read_call_output(result.text, self.spec.name)
        return ToolResult(out.text, out.images or result.images, out.error, result.seconds)
