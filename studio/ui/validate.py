"""The studio's own messages for what API clients send to public events: wrong types, values out of
range, choices that do not exist; text with lone surrogates or NUL is cleaned with a notice.

Gradio preprocesses each input before any handler (or `validator=`) runs, and answers a value it
cannot use with its own generic message; so the raw inputs are checked first, in `process_api`."""

from __future__ import annotations

import inspect
import math
from typing import Any, Optional

import gradio as gr
from gradio.exceptions import ComponentProcessingError, InvalidPathError
from pydantic import ValidationError

from studio.core.text import clean_text, replaced_notice
from studio.errors import InputError

_TEXT = (gr.Textbox, gr.Code)
_CHOICE = (gr.Dropdown, gr.Radio)


def _excerpt(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bounds(block: Any) -> str:
    lo, hi = getattr(block, "minimum", None), getattr(block, "maximum", None)
    if lo is not None and hi is not None:
        return f"between {lo:g} and {hi:g}"
    return f"at least {lo:g}" if lo is not None else (f"at most {hi:g}" if hi is not None else "")


def _whole(block: Any) -> bool:
    step = getattr(block, "step", None)
    return getattr(block, "precision", None) == 0 or (isinstance(step, int) and not isinstance(step, bool))


def check_number(name: str, block: Any, value: Any) -> None:
    """InputError unless `value` is a number the slider/number field accepts."""
    if value is None and isinstance(block, gr.Number) and not isinstance(block, gr.Slider):
        return
    kind = "a whole number" if _whole(block) else "a number"
    hint = f"Send {kind}" + (f" ({_bounds(block)})." if _bounds(block) else ".")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{name} must be {kind}; got {_excerpt(value)}.", hint)
    if _whole(block) and value != int(value):
        raise InputError(f"{name} must be {kind}; got {value!r}.", hint)
    lo, hi = getattr(block, "minimum", None), getattr(block, "maximum", None)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InputError(f"{name} is {value!r}; it must be {_bounds(block)}.", hint)


def check_choice(name: str, block: Any, value: Any) -> None:
    """InputError unless `value` is one of the component's current choices."""
    if value is None:
        return
    values = [v for _, v in (getattr(block, "choices", None) or [])]
    items = value if isinstance(value, list) and getattr(block, "multiselect", False) else [value]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise InputError(f"{name} must be one of the choices; got {_excerpt(item)}.",
                             "Send the value of a choice as text or a number.")
        if not getattr(block, "allow_custom_value", False) and item not in values:
            shown = ", ".join(map(str, values[:8])) + (" …" if len(values) > 8 else "")
            raise InputError(f"{name}: {_excerpt(item)} is not in the list of choices.",
                             f"Pick one of: {shown}." if values else "There is nothing to choose yet.")


def check_files(name: str, files: Any) -> None:
    """InputError unless `files` is what an upload returns: {"path": …} entries (or None)."""
    items = files if isinstance(files, list) else [files]
    for item in items:
        if item is not None and not (isinstance(item, dict) and isinstance(item.get("path"), str)
                                     and (item.get("meta") or {}).get("_type") == "gradio.FileData"):
            raise InputError(f"{name}: each file must be {{'path': …, 'meta': {{'_type': 'gradio.FileData'}}}} "
                             f"as an upload returns it; got {_excerpt(item)}.",
                             "Upload the file first (gradio_client's handle_file does it), then send what it returned.")


def clean_input(name: str, block: Any, value: Any) -> tuple[Any, int]:
    """The value with its text cleaned (and how many characters were replaced); InputError for wrong types."""
    if isinstance(block, gr.MultimodalTextbox):
        if value is None:
            return value, 0
        if not isinstance(value, dict) or not isinstance(value.get("text", ""), (str, type(None))) \
                or not isinstance(value.get("files", []), (list, type(None))):
            raise InputError(f"{name} must be {{'text': str, 'files': [...]}}; got {_excerpt(value)}.",
                             "Send the question as text and the images as a list of files.")
        check_files(name, value.get("files") or [])
        text, count = clean_text(value.get("text") or "")
        return {**value, "text": text}, count
    if isinstance(block, gr.File):
        check_files(name, value)
        return value, 0
    if isinstance(block, _TEXT):
        if value is None:
            return value, 0
        if not isinstance(value, str):
            raise InputError(f"{name} must be text; got {_excerpt(value)}.", "Send it as a string.")
        return clean_text(value)
    if isinstance(block, gr.Checkbox):
        if value is not None and not isinstance(value, bool):
            raise InputError(f"{name} must be true or false; got {_excerpt(value)}.", "Send a boolean.")
    elif isinstance(block, (gr.Slider, gr.Number)):
        check_number(name, block, value)
    elif isinstance(block, _CHOICE):
        check_choice(name, block, value)
    return value, 0


def _names(block_fn: Any) -> list[str]:
    """The handler's parameter names, which are the API's argument names."""
    try:
        return list(inspect.signature(block_fn.fn).parameters)
    except (TypeError, ValueError):
        return []


def check_inputs(block_fn: Any, inputs: list[Any], state: Any) -> tuple[list[Any], list[str]]:
    """Inputs with text cleaned, and the notices to show; InputError for the first bad value."""
    names, out, notes = _names(block_fn), list(inputs), []
    if len(out) != len(block_fn.inputs):
        wanted = [n for n, b in zip(names, block_fn.inputs) if not getattr(b, "stateful", False)]
        raise InputError(f"Wrong number of values: this endpoint takes {len(wanted)} ({', '.join(wanted)}).",
                         "Send all of them, in this order (gradio_client's view_api lists them).")
    for i, block in enumerate(block_fn.inputs):
        if i >= len(out) or getattr(block, "stateful", False):
            continue
        if state is not None and block._id in state:  # the session's copy has its current choices/limits
            block = state[block._id]
        name = names[i] if i < len(names) else f"argument {i + 1}"
        out[i], count = clean_input(name, block, out[i])
        if count:
            notes.append(replaced_notice(count, f"“{name}”"))
    return out, notes


class CheckedBlocks(gr.Blocks):
    """gr.Blocks whose events check their raw inputs first (see the module docstring)."""

    async def process_api(self, block_fn: Any, inputs: list[Any], state: Any = None, *args: Any,
                          **kwargs: Any) -> dict[str, Any]:
        fn = self.fns[block_fn] if isinstance(block_fn, int) else block_fn
        if not fn.batch and not kwargs.get("iterator"):
            try:
                inputs, notes = check_inputs(fn, inputs, state)
            except InputError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            for note in notes:
                _notify(self, kwargs.get("event_id"), note)
        try:
            return await super().process_api(block_fn, inputs, state, *args, **kwargs)
        except InvalidPathError as exc:
            if "not uploaded" not in str(exc):
                raise
            raise gr.Error("A file in the request was not uploaded to this server. Upload it first (gradio_client's "
                           "handle_file does it), then send what the upload returned.", print_exception=False) from None
        except (ComponentProcessingError, ValidationError) as exc:  # a shape the checks above do not know
            if not _input_error(fn, exc):
                raise
            raise gr.Error(f"A value in the request could not be read: {_detail(exc)}. "
                           "Check the endpoint's arguments (gradio_client's view_api lists them).",
                           print_exception=False) from None


def _detail(exc: Exception) -> str:
    """The first problem, short: "FileData size: Input should be a valid integer"."""
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        return f"{exc.title} {'.'.join(map(str, first['loc']))}: {first['msg']}"[:300]
    return str(exc).splitlines()[0][:300]


def _input_error(fn: Any, exc: Exception) -> bool:
    """True when Gradio failed on an input (preprocess or an input's data model), not on an output."""
    if isinstance(exc, ValidationError):
        models = {getattr(getattr(b, "data_model", None), "__name__", None) for b in fn.inputs}
        if any(isinstance(b, (gr.File, gr.MultimodalTextbox, gr.Image)) for b in fn.inputs):
            models.add("FileData")  # each uploaded file is read into one on the way in
        return exc.title in models
    return str(exc).startswith("Could not preprocess")


def _notify(blocks: gr.Blocks, event_id: Optional[str], text: str) -> None:
    """A warning toast for the event's user (nothing when called outside the queue)."""
    queue = getattr(blocks, "_queue", None)
    if queue is not None and event_id:
        queue.log_message(event_id=event_id, log=text, title="Warning", level="warning")
