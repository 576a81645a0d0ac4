"""Tool schemas from typed, documented Python functions, and argument checks against a schema."""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from studio.errors import StudioError
from studio.tools.base import ToolSpec

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NO_DEFAULT = inspect.Parameter.empty
SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object"}
SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments):\s*$")
OTHER_SECTION = re.compile(r"^(Returns?|Yields?|Raises?|Examples?|Notes?|Attributes|See Also|Todo):\s*$")
GOOGLE_ARG = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
REST_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")
REST_FIELD = re.compile(r"^:(\w+)")


class SchemaError(StudioError):
    """A function cannot be described as a tool (no docstring, an unsupported annotation, …)."""


@dataclass(frozen=True)
class Param:
    """One parameter of a tool function: its name, its type annotation and its default (if any)."""

    name: str
    annotation: Any
    default: Any = NO_DEFAULT


def function_spec(fn: Callable) -> ToolSpec:
    """The ToolSpec of a typed, documented function: its docstring summary and a JSON schema of its arguments."""
    where = f"function {fn.__name__}"
    try:
        hints = typing.get_type_hints(fn, include_extras=False)
    except Exception as exc:  # a name in an annotation that does not resolve
        raise SchemaError(f"The annotations of {where} cannot be read: {exc}.",
                          "Use built-in types (str, int, float, bool, list[...], Optional, Literal).") from exc
    params = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise SchemaError(f"{where} takes *{p.name}; a tool needs named parameters.",
                              "List each argument the model may pass by name.")
        if p.name not in hints:
            raise SchemaError(f"Parameter {p.name!r} of {where} has no type annotation.",
                              "Annotate it, e.g. `query: str`.")
        params.append(Param(p.name, hints[p.name], p.default))
    return build_spec(fn.__name__, inspect.getdoc(fn) or "", params, where)


def build_spec(name: str, doc: str, params: list[Param], where: str) -> ToolSpec:
    """A ToolSpec from a name, a docstring and parameters; `where` names the function in errors."""
    if not NAME.fullmatch(name):
        raise SchemaError(f"{where}: {name!r} is not a valid tool name.", "Use letters, digits and _ only.")
    summary, arg_docs = parse_docstring(doc)
    if not summary:
        what = "has no docstring" if not doc.strip() else "has a docstring without a summary line first"
        raise SchemaError(f"{where} {what}.", "Its first line tells the model what the tool does.")
    properties, required = {}, []
    for p in params:
        schema = annotation_schema(p.annotation, f"parameter {p.name!r} of {where}")
        if arg_docs.get(p.name):
            schema["description"] = arg_docs[p.name]
        if p.default is NO_DEFAULT:
            if not _nullable(schema):
                required.append(p.name)
        elif _json_value(p.default):
            schema["default"] = p.default
        properties[p.name] = schema
    return ToolSpec(name, summary, {"type": "object", "properties": properties, "required": required})


def annotation_schema(tp: Any, where: str) -> dict:
    """The JSON schema of a type annotation (str/int/float/bool/dict/list[...]/Optional/Literal)."""
    if tp in SCALARS:
        return {"type": SCALARS[tp]}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is list or origin is list:
        return {"type": "array", "items": annotation_schema(args[0], where)} if args else {"type": "array"}
    if origin is dict:
        return {"type": "object"}
    if origin is typing.Literal:
        return _literal_schema(args, where)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:  # Optional[X]: X or null
            schema = annotation_schema(rest[0], where)
            schema["type"] = [schema["type"], "null"]
            if "enum" in schema:
                schema["enum"] = [*schema["enum"], None]
            return schema
    raise SchemaError(f"The type of {where} ({_type_name(tp)}) cannot be given to a model.",
                      "Use str, int, float, bool, dict, list[...], Optional[...] or Literal[...].")


def _literal_schema(values: tuple, where: str) -> dict:
    kinds = {type(v) for v in values}
    if len(kinds) != 1 or next(iter(kinds)) not in (str, int, float, bool):
        raise SchemaError(f"The Literal of {where} mixes types or uses a non-JSON value.",
                          "Use one kind of value, e.g. Literal['a', 'b'].")
    return {"type": SCALARS[next(iter(kinds))], "enum": list(values)}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _nullable(schema: dict) -> bool:
    return isinstance(schema.get("type"), list) and "null" in schema["type"]


def _json_value(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary (first paragraph) and per-argument descriptions of a Google- or reST-style docstring."""
    lines = inspect.cleandoc(doc or "").splitlines()
    summary = []
    for line in lines:
        if not line.strip() or SECTION.match(line.strip()) or line.strip().startswith(":"):
            break
        summary.append(line.strip())
    return " ".join(summary), {**_google_args(lines), **_rest_args(lines)}


def _google_args(lines: list[str]) -> dict[str, str]:
    """Descriptions from an `Args:` section: `name (type): text`, continued on more-indented lines."""
    out: dict[str, str] = {}
    inside, indent, current = False, None, None
    for line in lines:
        stripped, depth = line.strip(), len(line) - len(line.lstrip())
        if SECTION.match(stripped):
            inside, indent, current = True, None, None
        elif inside and (OTHER_SECTION.match(stripped) or (stripped and indent is not None and depth < indent)):
            inside = False
        elif inside and stripped:
            match = GOOGLE_ARG.match(stripped)
            if match and (indent is None or depth == indent):
                indent, current = depth, match.group(1)
                out[current] = match.group(2).strip()
            elif current:
                out[current] = f"{out[current]} {stripped}".strip()
    return out


def _rest_args(lines: list[str]) -> dict[str, str]:
    """Descriptions from reST fields: `:param name: text` (or `:param type name: text`), continued lines."""
    out: dict[str, str] = {}
    current = None
    for line in lines:
        stripped = line.strip()
        match = REST_PARAM.match(stripped)
        if match:
            current = match.group(1)
            out[current] = match.group(2).strip()
        elif REST_FIELD.match(stripped) or not stripped:
            current = None
        elif current:
            out[current] = f"{out[current]} {stripped}"
    return out


def check_arguments(spec: ToolSpec, arguments: Any) -> list[str]:
    """What is wrong with a call's arguments for `spec` (missing, unknown, wrong type); empty when fine."""
    if not isinstance(arguments, dict):
        shown = arguments if isinstance(arguments, str) else json.dumps(arguments, default=str)
        return [f"the arguments of {spec.name} must be a JSON object such as "
                f"{_example(spec)}, not {shown[:200]!r}"]
    properties = spec.parameters.get("properties", {})
    problems = [f"missing required argument {name!r}" for name in spec.parameters.get("required", [])
                if name not in arguments]
    for name, value in arguments.items():
        if name not in properties:
            known = ", ".join(properties) or "none"
            problems.append(f"unknown argument {name!r} (the arguments of {spec.name} are: {known})")
        else:
            problems.extend(value_problems(properties[name], value, name))
    return problems


def value_problems(schema: dict, value: Any, where: str) -> list[str]:
    """Type and enum problems of one value against a (small) JSON schema."""
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    if kinds and not any(_is_kind(value, kind) for kind in kinds):
        return [f"argument {where!r} must be {' or '.join(kinds)}, not {_json_kind(value)} {value!r:.80}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"argument {where!r} must be one of {schema['enum']}, not {value!r:.80}"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return [f"argument {where!r} must be at least {schema['minimum']}, not {value}"]
        if "maximum" in schema and value > schema["maximum"]:
            return [f"argument {where!r} must be at most {schema['maximum']}, not {value}"]
    if isinstance(value, list) and "items" in schema:
        return [p for i, item in enumerate(value) for p in value_problems(schema["items"], item, f"{where}[{i}]")]
    return []


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    checks = {"string": str, "boolean": bool, "array": list, "object": dict, "null": type(None)}
    return isinstance(value, checks.get(kind, object))


def _json_kind(value: Any) -> str:
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _example(spec: ToolSpec) -> str:
    """A call's arguments as the model should write them, with placeholder values."""
    samples = {"string": "...", "integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}
    properties = spec.parameters.get("properties", {})
    names = spec.parameters.get("required") or list(properties)[:1]
    example = {}
    for name in names:
        kind = properties.get(name, {}).get("type", "string")
        example[name] = samples.get(kind[0] if isinstance(kind, list) else kind, "...")
    return json.dumps(example, ensure_ascii=False)
