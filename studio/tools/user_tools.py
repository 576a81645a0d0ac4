"""A user's tool file: read with `ast` (never imported by the server) into ToolSpecs, and the code that calls one."""

from __future__ import annotations

import ast
import json
import typing
from pathlib import Path
from typing import Any

from studio.errors import StudioError
from studio.tools.base import ToolResult, ToolSpec
from studio.tools.schemas import NO_DEFAULT, Param, SchemaError, build_spec

# The names an annotation may use: what the schema builder understands, nothing that runs code.
TYPE_NAMES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict,
                              "List": list, "Dict": dict, "None": None, "Optional": typing.Optional,
                              "Union": typing.Union, "Literal": typing.Literal}
RESULT_MARK = "\x1epuyu-tool-result\x1e"  # starts the one line of the call's JSON result, whatever it printed
RESULT_CHARS = 20_000  # a tool's result and its printed text are each cut to this many characters
FIX_HINT = ("Give each public function type annotations and a docstring, use literal defaults, "
            "or start its name with _ to keep it out of the tools.")


class ToolFileError(StudioError):
    """A user tool file cannot be read or does not describe its tools well enough."""


def load_tool_file(path: str | Path) -> list[ToolSpec]:
    """The tools a Python file defines (public top-level functions), read without importing the file."""
    path = Path(path)
    tree = _parse(path)
    specs, problems = [], []
    for node in tree.body:
        if isinstance(node, ast.AsyncFunctionDef) and not node.name.startswith("_"):
            problems.append(f"line {node.lineno}: {node.name} is async; tools must be plain functions")
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
            continue
        try:
            specs.append(_function_spec(node))
        except SchemaError as exc:
            problems.append(f"line {node.lineno}: {exc.message.rstrip('.')}")
    names = [s.name for s in specs]
    problems += [f"{name} is defined twice" for name in sorted({n for n in names if names.count(n) > 1})]
    if problems:
        raise ToolFileError(f"The tool file {path} has problems: " + "; ".join(problems) + ".", FIX_HINT)
    if not specs:
        raise ToolFileError(f"The tool file {path} defines no tools.",
                            "Define public top-level functions with type annotations and a docstring.")
    return specs


def load_tool_folder(folder: str | Path) -> list[tuple[Path, ToolSpec]]:
    """Every tool of the *.py files in a folder (sorted), each with its file; a name used twice is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ToolFileError(f"The tool folder {folder} does not exist or is not a folder.",
                            "Create it, or fix the tools folder in the config.")
    tools = [(path, spec) for path in sorted(folder.glob("*.py")) if not path.name.startswith("_")
             for spec in load_tool_file(path)]
    seen: dict[str, Path] = {}
    for path, spec in tools:
        if spec.name in seen:
            raise ToolFileError(f"The tool {spec.name} is defined in both {seen[spec.name]} and {path}.",
                                "Rename one of them: the model calls tools by name.")
        seen[spec.name] = path
    return tools


def _parse(path: Path) -> ast.Module:
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ToolFileError(f"The tool file {path} cannot be read: {exc}.",
                            "Check the path in the config and that the file is UTF-8 text.") from exc
    try:
        return ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise ToolFileError(f"The tool file {path} has a syntax error on line {exc.lineno}: {exc.msg}.",
                            "Fix the file (python -m py_compile shows the same error) and start again.") from exc


def _function_spec(node: ast.FunctionDef) -> ToolSpec:
    where = f"function {node.name}"
    a = node.args
    if a.vararg or a.kwarg:
        raise SchemaError(f"{where} takes *args or **kwargs; a tool needs named parameters")
    positional = a.posonlyargs + a.args
    defaults = [NO_DEFAULT] * (len(positional) - len(a.defaults)) + list(a.defaults)
    pairs = list(zip(positional, defaults)) + list(zip(a.kwonlyargs, [d or NO_DEFAULT for d in a.kw_defaults]))
    params = [_param(arg, default, where) for arg, default in pairs]
    return build_spec(node.name, ast.get_docstring(node) or "", params, where)


def _param(arg: ast.arg, default: Any, where: str) -> Param:
    if arg.annotation is None:
        raise SchemaError(f"parameter {arg.arg!r} of {where} has no type annotation")
    if default is not NO_DEFAULT:
        try:
            default = ast.literal_eval(default)
        except ValueError as exc:
            raise SchemaError(f"the default of parameter {arg.arg!r} of {where} is not a literal") from exc
    return Param(arg.arg, annotation_from_ast(arg.annotation, f"parameter {arg.arg!r} of {where}"), default)


def annotation_from_ast(node: ast.expr, where: str) -> Any:
    """The typing object an annotation's source stands for, built from a small whitelist (nothing evaluated)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation
        try:
            return annotation_from_ast(ast.parse(node.value, mode="eval").body, where)
        except SyntaxError as exc:
            raise SchemaError(f"the annotation of {where} is not valid Python") from exc
    if isinstance(node, ast.Constant) and node.value is None:
        return None
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = node.id if isinstance(node, ast.Name) else node.attr  # typing.Optional → Optional
        if name in TYPE_NAMES:
            return TYPE_NAMES[name]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # X | None
        return typing.Union[annotation_from_ast(node.left, where), annotation_from_ast(node.right, where)]
    if isinstance(node, ast.Subscript):
        return _subscript(node, where)
    raise SchemaError(f"the annotation of {where} ({ast.unparse(node)}) cannot be given to a model; "
                      "use str, int, float, bool, dict, list[...], Optional[...] or Literal[...]")


def _subscript(node: ast.Subscript, where: str) -> Any:
    base = annotation_from_ast(node.value, where)
    items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    if base is typing.Literal:
        try:
            return typing.Literal[tuple(ast.literal_eval(item) for item in items)]
        except ValueError as exc:
            raise SchemaError(f"the Literal of {where} holds something other than literal values") from exc
    args = tuple(annotation_from_ast(item, where) for item in items)
    if base is list:
        return list[args[0]]
    if base is dict:
        return dict[args]
    if base in (typing.Optional, typing.Union):
        return base[args if len(args) > 1 else args[0]]
    raise SchemaError(f"the annotation of {where} ({ast.unparse(node)}) cannot be given to a model")


def call_code(path: str | Path, name: str, arguments: dict, limit: int = RESULT_CHARS) -> str:
    """Python source that imports the tool file by path, calls `name(**arguments)` and prints one JSON line."""
    if not isinstance(arguments, dict):
        raise StudioError(f"The arguments of {name} must be a JSON object.", "Check them with check_arguments first.")
    # Wrapped in a function so nothing is left in a stateful interpreter's namespace; what the tool prints
    # is captured and capped so the one result line always fits in the interpreter's capped output.
    return f"""def __puyu_tool_call():
    import contextlib, importlib.util, io, json, sys, traceback
    path, name, arguments = {str(Path(path).resolve())!r}, {name!r}, json.loads({json.dumps(arguments)!r})
    printed, limit = io.StringIO(), {int(limit)}
    try:
        with contextlib.redirect_stdout(printed):
            spec = importlib.util.spec_from_file_location("puyu_user_tool", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses and pickling look the module up there
            spec.loader.exec_module(module)
            result = getattr(module, name)(**arguments)
        text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=repr)
        out = {{"text": text[:limit], "truncated": len(text) > limit}}
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from a tool are its failure too
        frames = traceback.extract_tb(exc.__traceback__)
        line = next((f.lineno for f in reversed(frames) if f.filename == path), None)
        out = {{"error": f"{{type(exc).__name__}}: {{exc}}"[:limit], "line": line}}
    out["printed"] = printed.getvalue()[:limit]
    print({RESULT_MARK!r} + json.dumps(out, ensure_ascii=False), flush=True)
__puyu_tool_call()
del __puyu_tool_call
"""


def read_call_output(output: str, name: str = "the tool") -> ToolResult:
    """The ToolResult of a call_code run from what it printed."""
    before, mark, after = output.rpartition(RESULT_MARK)
    if not mark:
        return ToolResult(text=output.strip(), error=f"{name} ended without a result (it was stopped or crashed).")
    try:
        out = json.loads(after.splitlines()[0] if after else "")
    except (ValueError, IndexError):
        return ToolResult(text=before.strip(), error=f"{name} returned an unreadable result.")
    printed = out.get("printed", "").strip()
    if "error" in out:
        where = f" (line {out['line']} of the tool file)" if out.get("line") else ""
        return ToolResult(text=printed, error=f"{name} failed{where}: {out['error']}")
    text = out.get("text", "") + (" … (truncated)" if out.get("truncated") else "")
    return ToolResult(text="\n".join(t for t in (printed, text) if t))
