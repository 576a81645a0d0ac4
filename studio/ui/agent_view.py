"""Agent conversations as Chatbot messages: each tool step a collapsible message, the answer below it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from studio.core.session import ChatSession
from studio.core.text import cleaned
from studio.core.types import Message
from studio.ui.i18n import tr

RESULT_CAP = 4000  # characters of a tool's output shown in a step (the model saw the interpreter's own cap)
TITLE_CAP = 80


def _fenced(text: str, info: str) -> str:
    """`text` in a fence longer than any backtick run in it, so model output cannot close it."""
    bar = "`" * max(3, _longest_run(text) + 1)
    return f"{bar}{info}\n{text}\n{bar}"


def _longest_run(text: str) -> int:
    best = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        best = max(best, run)
    return best


def _capped(text: str, lang: str) -> str:
    if len(text) <= RESULT_CAP:
        return text
    return f"{text[:RESULT_CAP]}\n{tr(lang, 'agent_more_chars', n=len(text) - RESULT_CAP)}"


def call_summary(call: dict) -> str:
    """A one-line title for a call: the tool and its arguments, shortened."""
    if call.get("kind") == "interpreter":
        first = next((ln.strip() for ln in str(call.get("code") or call.get("raw") or "").splitlines()
                      if ln.strip()), "")
        text = f"python · {first}"
    else:
        args = call.get("arguments")
        shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in args.items()) \
            if isinstance(args, dict) else str(call.get("raw") or "")
        text = f"{call.get('name') or '?'}({shown})"
    text = " ".join(cleaned(text).split())
    return text if len(text) <= TITLE_CAP else text[:TITLE_CAP - 1] + "…"


def _call_block(call: dict) -> str:
    if call.get("kind") == "interpreter":
        return _fenced(str(call.get("code") or call.get("raw") or ""), "python")
    args = call.get("arguments")
    body = json.dumps(args, ensure_ascii=False, indent=2, default=str) if args is not None else str(call.get("raw"))
    return _fenced(body, "json")


def _result_block(result: Message, lang: str) -> list[str]:
    meta = result.meta or {}
    parts = []
    text = result.text
    error = meta.get("error") or ""
    if error and text.endswith(error):  # the task stores text + error in one; show the error on its own
        text = text[: -len(error)].rstrip()
    if text:
        parts += [f"**{tr(lang, 'agent_result')}**", _fenced(_capped(cleaned(text), lang), "text")]
    if error:
        parts += [f"**{tr(lang, 'agent_error')}**", _fenced(_capped(cleaned(error), lang), "text")]
    if not parts:
        parts.append(f"*{tr(lang, 'agent_no_output')}*")
    return parts


def _figures(index: int, paths: list[str], lang: str) -> list[str]:
    """A step's figures as Markdown images: Gradio shows a collapsible message's text parts only, so a
    figure is linked through the file route (the studio's private files are an allowed path)."""
    there = [p for p in paths if Path(p).is_file()]
    shown = [f"![{tr(lang, 'agent_figure', k=k + 1, step=index + 1)}](/gradio_api/file={quote(p)})"
             for k, p in enumerate(there)]
    if len(there) < len(paths):  # figures live among the studio's temporary files, which are swept
        shown.append(f"*{tr(lang, 'agent_figures_gone', n=len(paths) - len(there))}*")
    return shown


def step_message(index: int, call: Message, result: Optional[Message], lang: str = "en") -> dict:
    """One tool step: title (tool and arguments), status, duration; thought, call, result, figures inside."""
    meta = {**(call.meta or {}), **((result.meta or {}) if result is not None else {})}
    running = result is None and (call.meta or {}).get("status") == "running"
    parts = [cleaned(call.text)] if call.text.strip() else []
    parts += [f"**{tr(lang, 'agent_call')}**", _call_block(call.tool_call or {})]
    if result is not None:
        parts += _result_block(result, lang)
    elif not running:
        parts.append(f"*{tr(lang, 'agent_not_run')}*")
    metadata = {"title": call_summary(call.tool_call or {}), "id": f"step-{index}",
                "status": "pending" if running else "done"}
    if not running and (call.meta or {}).get("seconds") is not None:
        metadata["duration"] = float((call.meta or {})["seconds"])
    if meta.get("status") in ("error", "cancelled"):
        # Marks any font has (an emoji would need an emoji font): × failed, ■ stopped.
        metadata["title"] = f"{'×' if meta['status'] == 'error' else '■'} {metadata['title']}"
    parts += _figures(index, [str(p) for p in (meta.get("images") or ())], lang)
    return {"role": "assistant", "content": "\n\n".join(parts), "metadata": metadata}


def agent_messages(session: ChatSession, live: str = "", lang: str = "en") -> list[dict]:
    """The conversation for the Chatbot in `lang`; `live` is the model's text still streaming (shown last)."""
    shown, step = [], 0
    messages = session.messages
    for i, m in enumerate(messages):
        if m.role == "user":
            shown.append({"role": "user", "content": cleaned(m.text)})
        elif m.role == "assistant" and m.tool_call:
            nxt = messages[i + 1] if i + 1 < len(messages) and messages[i + 1].role == "tool" else None
            shown.append(step_message(step, m, nxt, lang))
            step += 1
        elif m.role == "assistant" and m.text:
            note = f"\n\n*{tr(lang, 'reply_interrupted')}*" if m.partial else ""
            shown.append({"role": "assistant", "content": cleaned(m.text) + note})
    if live.strip():
        shown.append({"role": "assistant", "content": cleaned(live)})
    return shown
