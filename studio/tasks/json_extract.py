"""Schema-checked JSON answers: parse a model's reply, validate it, and say precisely what is wrong."""

from __future__ import annotations

import json
import re
from typing import Any

from studio.errors import InputError

DEFAULT_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "description": "what the image shows, in a few words"},
        "text": {"type": "string", "description": "any text written in the image"},
        "objects": {"type": "array", "items": {"type": "string"}},
        "numbers": {"type": "array", "items": {"type": "string"}, "description": "dates, prices, amounts"},
    },
    "required": ["title", "objects"],
}
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
MAX_SCHEMA_CHARS = 20_000


def load_schema(text: str) -> dict:
    """The user's JSON Schema, checked; InputError naming the problem otherwise."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(text, str) or not text.strip():
        raise InputError("The JSON schema is empty.", "Write a JSON Schema, or reset it to the example.",
                         key="err_schema_empty")
    if len(text) > MAX_SCHEMA_CHARS:
        raise InputError(f"The JSON schema is {len(text):,} characters; the limit is {MAX_SCHEMA_CHARS:,}.", "")
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"The JSON schema is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).",
                         "Fix the schema text; it must be one JSON object.") from None
    if not isinstance(schema, dict):
        raise InputError("The JSON schema must be a JSON object, e.g. {\"type\": \"object\", …}.", "")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(top level)"
        raise InputError(f"The JSON schema is not a valid JSON Schema at {where}: {exc.message}", "") from None
    return schema


def _candidates(text: str) -> list[str]:
    """Places a JSON value may be in a reply: fenced blocks, then the outermost {...} or [...]."""
    found = [m.strip() for m in _FENCE.findall(text)]
    for open_, close in (("{", "}"), ("[", "]")):
        start, end = text.find(open_), text.rfind(close)
        if 0 <= start < end:
            found.append(text[start : end + 1])
    found.append(text.strip())
    return found


def parse_answer(text: str) -> Any:
    """The JSON value in a reply (code fences and chatter around it allowed); ValueError saying why not."""
    if not text.strip():
        raise ValueError("the answer was empty")
    error = None
    for candidate in _candidates(text):
        try:
            return json.loads(candidate)
        except json.JSONDecodeError as exc:
            error = error or f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    raise ValueError(f"the answer is not valid JSON ({error})")


def schema_errors(value: Any, schema: dict, limit: int = 5) -> list[str]:
    """Readable validation errors of `value` against `schema` (at most `limit`), [] when valid."""
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path))
    out = []
    for err in errors[:limit]:
        where = "/".join(str(p) for p in err.path) or "(top level)"
        out.append(f"{where}: {err.message}")
    return out


def first_prompt(schema: dict, instructions: str) -> str:
    """The request for a JSON answer that matches `schema`."""
    extra = f"\n{instructions.strip()}" if instructions and instructions.strip() else ""
    return ("Extract the key information from the image(s) as JSON that matches this JSON Schema:\n"
            f"```json\n{json.dumps(schema, ensure_ascii=False, indent=2)}\n```\n"
            f"Reply with the JSON object only, without explanations.{extra}")


def retry_prompt(problem: str) -> str:
    """The follow-up after an answer failed: what was wrong and what to do."""
    return (f"That answer cannot be used: {problem}. Reply again with only one JSON object that matches "
            "the schema exactly: the required keys, the right types, no extra text.")
