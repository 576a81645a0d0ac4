"""Conversation exports: Markdown that renders, for reading; JSON for keeping and re-importing."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any, Optional

from pydantic import ValidationError

from studio.core.session import ChatSession, new_id
from studio.core.types import GenParams, Message, TextPart
from studio.errors import InputError
from studio.exports.article_markdown import markdown_paragraph
from studio.exports.filenames import export_filename  # noqa: F401  (re-exported)

FORMAT = "puyu-studio.conversation"
VERSION = 1
MAX_IMPORT_BYTES = 64 * 1024 * 1024
ROLES = ("system", "user", "assistant", "tool")
ROLE_HEADINGS = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool result"}
_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SURROGATES = re.compile("[\ud800-\udfff]")
# The characters that can start inline markup (emphasis, code, links, HTML, entities, strikethrough)
# or a heading's closing sequence; anything else is shown as typed.
_INLINE_MARKUP = re.compile(r"([\\`*_\[\]<>&~#|])")


# -- Markdown -------------------------------------------------------------------------------


def _utc(moment: Optional[datetime]) -> datetime:
    """`moment` (default now) as an aware UTC datetime."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _escape_inline(text: str) -> str:
    """One line of text that Markdown shows literally (markup characters backslash-escaped)."""
    # CommonMark lets any ASCII punctuation be escaped, so this re-parses to exactly `text`
    # and also neutralises inline HTML such as <script> in a title.
    return _INLINE_MARKUP.sub(r"\\\1", " ".join(text.split()))


def _fence(text: str, info: str) -> str:
    """`text` in a backtick fence longer than any backtick run inside it, so nothing can close it early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    bar = "`" * max(3, longest + 1)
    # The text is followed by exactly one newline before the closing fence; a reader recovers the
    # message by dropping that one newline from the code block's content.
    return f"{bar}{info}\n{text}\n{bar}"


def _step_call(call: dict) -> str:
    """An agent's tool call as a collapsible block: the code as Python, plugin arguments as JSON."""
    name = str(call.get("name") or "python")
    if call.get("kind") == "interpreter":
        body = _fence(str(call.get("code") or call.get("raw") or ""), "python")
    else:
        args = call.get("arguments")
        body = _fence(json.dumps(args, ensure_ascii=False, indent=2, default=str) if args is not None
                      else str(call.get("raw") or ""), "json")
    return f"<details><summary>Tool call: {_escape_inline(name)}</summary>\n\n{body}\n\n</details>"


def _heading(message: Message) -> str:
    """The section heading: the role, and for agent steps the tool, its status and time."""
    heading = ROLE_HEADINGS.get(message.role, message.role.title())
    meta = message.meta or {}
    if message.tool_call:
        heading += f" · calls {message.tool_call.get('name') or 'python'}"
    elif message.role == "tool":
        heading += f" · {meta.get('tool') or message.name or 'tool'}"
    if meta.get("status"):
        heading += f" ({meta['status']}, {meta.get('seconds', 0)} s)"
    return _escape_inline(heading)


def _body(message: Message) -> str:
    """The message as Markdown that renders: a reply's or a prompt's own Markdown, a tool's output as code."""
    if message.role == "tool":
        return _fence(message.text, "text")  # program output, not Markdown: shown exactly as it came
    # The text renders as written; only what would break the document is changed (see markdown_paragraph):
    # a fence left open is closed, HTML is shown as text, a remote picture becomes a plain link.
    return markdown_paragraph(message.text)


def _message_block(message: Message) -> str:
    """One `### Role` section with the message's Markdown as is (a tool call after it, collapsible)."""
    parts = [f"### {_heading(message)}", ""]
    figures = len((message.meta or {}).get("images") or ())
    if figures:
        parts += [f"*({figures} figure{'s' if figures != 1 else ''} not included in this export)*", ""]
    if message.images:
        count = len(message.images)
        parts += [f"*({count} image{'s' if count != 1 else ''} not included in this export)*", ""]
    if message.partial:
        parts += ["*(this reply was interrupted before it finished)*", ""]
    body = _body(message)
    if body:
        parts.append(body)
    if message.tool_call:
        parts += ["", _step_call(message.tool_call)]
    return "\n".join(parts).rstrip("\n")


def _quoted(text: str) -> str:
    """`text` as a blockquote; every line, blank ones too, carries the marker so the quote holds together."""
    return "\n".join(f"> {row}" if row else ">" for row in text.split("\n"))


def conversation_markdown(
    session: ChatSession, model: str | None = None, *, exported_at: datetime | None = None
) -> bytes:
    """The conversation as a UTF-8 Markdown document that renders: a heading per message, then its text."""
    title = session.display_title() or "Conversation"
    line = f"Exported {_utc(exported_at):%Y-%m-%d %H:%M} UTC"
    if model:
        line += f" · model {_escape_inline(model)}"
    blocks = [f"# {_escape_inline(title) or 'Conversation'}", line]
    if session.system_prompt:
        blocks += ["**System prompt**", _quoted(markdown_paragraph(session.system_prompt))]
    blocks += [_message_block(m) for m in session.messages]
    text = "\n\n".join(blocks) + "\n"
    # Lone UTF-16 surrogates (possible in browser input) cannot be written as UTF-8.
    return _SURROGATES.sub("\ufffd", text).encode("utf-8")


# -- JSON -----------------------------------------------------------------------------------


def conversation_json(
    session: ChatSession, model: str | None = None, *, exported_at: datetime | None = None
) -> bytes:
    """The conversation as UTF-8 JSON that `parse_conversation_json` reads back to an equal session."""
    body = session.to_dict()
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": _utc(exported_at).isoformat().replace("+00:00", "Z"),
        "model": model,
        "id": body["id"],
        "title": body["title"],
        "system_prompt": body["system_prompt"],
        "engine": body["engine"],
        "created": body["created"],
        "updated": body["updated"],
        "params": body["params"],
        "messages": body["messages"],
    }
    text = json.dumps(doc, ensure_ascii=False, indent=2)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates: \u escapes keep them exactly and the file stays valid UTF-8.
        return json.dumps(doc, ensure_ascii=True, indent=2).encode("ascii")


def _load_document(data: bytes) -> dict:
    """Decode bytes to the top-level JSON object, or raise InputError saying why not."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if len(data) > MAX_IMPORT_BYTES:
        raise InputError(
            f"The file is too large to import ({len(data) // (1024 * 1024)} MiB).",
            f"Conversation exports are far smaller; the limit is {MAX_IMPORT_BYTES // (1024 * 1024)} MiB.",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError("The file is not UTF-8 text.", "Choose a .json file exported by Puyu Studio.") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"The file is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
            "Choose a .json file exported by Puyu Studio.",
        ) from exc
    except RecursionError as exc:
        raise InputError("The JSON is nested too deeply.", "Choose a .json file exported by Puyu Studio.") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(
            "This is not a Puyu Studio conversation export.",
            f'An export is a JSON object with "format": "{FORMAT}".',
        )
    version = doc.get("version")
    if version != VERSION or isinstance(version, bool):
        raise InputError(
            f"Unsupported conversation export version {version!r}.",
            f"This Puyu Studio reads version {VERSION}; upgrade it to import newer exports.",
        )
    return doc


def _field(doc: dict, key: str, kind: type | tuple, default: Any) -> Any:
    """doc[key] if it has the expected type, `default` if absent, else InputError."""
    value = doc.get(key)
    if value is None:
        return default
    # bool is an int subclass; `"created": true` is not a time stamp.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InputError(f'The export\'s "{key}" has the wrong type.', "The file may have been edited by hand.")
    return value


def _messages(raw: Any) -> list[Message]:
    """Validate the export's message list."""
    if not isinstance(raw, list):
        raise InputError('The export\'s "messages" is not a list.', "The file may have been edited by hand.")
    messages = []
    for i, item in enumerate(raw):
        ok = isinstance(item, dict) and item.get("role") in ROLES and isinstance(item.get("content"), str)
        if not ok:
            raise InputError(
                f"Message {i + 1} of the export is malformed.",
                f'Each message needs "role" (one of {", ".join(ROLES)}) and a text "content".',
            )
        message = Message(item["role"], [TextPart(item["content"])], item.get("partial") is True)
        message.name = item["name"] if isinstance(item.get("name"), str) else None
        message.tool_call = item["tool_call"] if isinstance(item.get("tool_call"), dict) else None
        message.meta = item["meta"] if isinstance(item.get("meta"), dict) else None
        messages.append(message)
    return messages


def _params(raw: Any) -> GenParams:
    """Validate the export's generation parameters."""
    if not isinstance(raw, dict):
        raise InputError('The export\'s "params" is not an object.', "The file may have been edited by hand.")
    try:
        return GenParams(**raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InputError(
            f"The export's generation parameters are invalid ({problems}).",
            "Fix or remove them in the file; defaults are used for missing ones.",
        ) from exc


def parse_conversation_json(data: bytes) -> ChatSession:
    """Rebuild a session from `conversation_json` output; InputError when the data is not one."""
    doc = _load_document(data)
    conv_id = _field(doc, "id", str, None) or new_id()
    if not _ID_PATTERN.fullmatch(conv_id):
        raise InputError('The export\'s "id" is not a valid identifier.', "Remove it to get a new one.")
    now = time.time()
    return ChatSession(
        id=conv_id,
        title=_field(doc, "title", str, ""),
        system_prompt=_field(doc, "system_prompt", str, None),  # null: the model's default
        messages=_messages(doc.get("messages", [])),
        params=_params(doc.get("params", {})),
        engine=_field(doc, "engine", str, "chat"),
        created=float(_field(doc, "created", (int, float), now)),
        updated=float(_field(doc, "updated", (int, float), now)),
    )
