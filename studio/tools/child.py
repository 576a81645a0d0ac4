"""The sandboxed interpreter's child process: confine itself, then run cells in one namespace, Jupyter-style."""

from __future__ import annotations

import ast
import base64
import builtins
import contextlib
import io
import json
import linecache
import resource
import sys
import traceback

from studio.tools import confine, wire

MAX_IMAGES = 8
SHORTENED = "… [traceback shortened]\n"


class CappedText(io.TextIOBase):
    """A text stream that keeps the first `cap` characters and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap, self.parts, self.kept, self.dropped = cap, [], 0, 0

    def writable(self) -> bool:
        """Streams written by print()."""
        return True

    def write(self, text: str) -> int:
        """Keep what fits under the cap."""
        room = max(self.cap - self.kept, 0)
        self.parts.append(text[:room])
        self.kept += min(len(text), room)
        self.dropped += max(len(text) - room, 0)
        return len(text)

    def text(self) -> str:
        """What was kept."""
        return "".join(self.parts)


def cpu_seconds() -> float:
    """CPU time this process has used (the parent sets the per-call budget from it)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def split_cell(code: str, name: str) -> tuple[ast.Module, ast.Expression | None]:
    """The cell's statements, and its last expression apart when it ends with one (its value is shown)."""
    tree = ast.parse(code, name, "exec")
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        return tree, ast.Expression(tree.body.pop().value)
    return tree, None


def figures() -> list[str]:
    """Open matplotlib figures as base64 PNGs (then closed), when the code used pyplot."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return []
    images = []
    for number in plt.get_fignums()[:MAX_IMAGES]:
        buffer = io.BytesIO()
        plt.figure(number).savefig(buffer, format="png")
        images.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    plt.close("all")
    return images


def describe(exc: BaseException) -> str:
    """The traceback from the cell down (a syntax error: just where it is), without this module's frames."""
    if isinstance(exc, SyntaxError):
        return "".join(traceback.format_exception_only(type(exc), exc))
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next))


def run_cell(code: str, namespace: dict, number: int, cap: int) -> dict:
    """Run one cell; stdout, stderr, the last value's repr, a traceback when it failed, figures."""
    name = f"<cell {number}>"
    linecache.cache[name] = (len(code), None, code.splitlines(keepends=True), name)
    out, err, value, error = CappedText(cap), CappedText(cap), CappedText(cap), ""
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            body, last = split_cell(code, name)
            exec(compile(body, name, "exec"), namespace)  # noqa: S102 - running the cell is the point; confined
            if last is not None:
                result = eval(compile(last, name, "eval"), namespace)
                if result is not None:
                    namespace["_"] = result
                    value.write(repr(result))
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt must not end the child
            error = describe(exc)
        try:
            images = figures()
        except Exception as exc:  # noqa: BLE001 - a broken figure must not lose the cell's output
            images, error = [], error or f"Could not save a figure: {exc}"
    if len(error) > cap:  # the end of a traceback says what went wrong: keep that
        error = SHORTENED + error[len(SHORTENED) - cap:]
    return {"stdout": out.text(), "stderr": err.text(), "value": value.text(), "error": error,
            "images": images, "dropped": out.dropped + err.dropped + value.dropped, "cpu": cpu_seconds()}


def serve(requests: int, replies: int, cap: int) -> None:
    """Answer cells until the parent closes the pipe."""
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    number = 0
    while (message := wire.receive(requests)) is not None:
        number += 1
        wire.send(replies, run_cell(message["code"], namespace, number, cap))


def main(argv: list[str]) -> None:
    """argv: request fd, reply fd, working folder, limits as JSON."""
    requests, replies, folder, config = int(argv[0]), int(argv[1]), argv[2], json.loads(argv[3])
    active, missing = confine.apply(config, folder)
    wire.send(replies, {"protections": active, "missing": missing, "cpu": cpu_seconds()})
    serve(requests, replies, config["output_chars"])
