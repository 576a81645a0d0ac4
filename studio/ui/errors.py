"""One place where exceptions become messages a user can act on, in the page's language."""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from typing import Optional

import gradio as gr

from studio.errors import StudioError
from studio.ui.i18n import page_lang, strings, tr

log = logging.getLogger("studio.ui")


def error_text(exc: StudioError, lang: str) -> str:
    """The error in `lang` when it names a UI string (its hint too, when there is one); else its English."""
    words = strings(lang)
    if not exc.key or exc.key not in words:
        return str(exc)
    try:
        hint = words.get(exc.key + "_hint", "").format(**exc.values)
        return f"{words[exc.key].format(**exc.values)} {hint}".strip()
    except (KeyError, ValueError, IndexError):  # values that do not fit the string: the English is still right
        return str(exc)


def _request(args: tuple, kwargs: dict) -> Optional[gr.Request]:
    """The handler's gr.Request, when it takes one."""
    found = kwargs.get("request")
    if isinstance(found, gr.Request):
        return found
    return next((a for a in args if isinstance(a, gr.Request)), None)


def _to_gr_error(exc: BaseException, request: Optional[gr.Request]) -> gr.Error:
    if isinstance(exc, gr.Error):  # worded by the handler that raised it
        return exc
    lang = page_lang(request)
    if isinstance(exc, StudioError):
        return gr.Error(error_text(exc, lang), print_exception=False)
    ref = uuid.uuid4().hex[:8]
    log.exception("internal error %s", ref, exc_info=exc)
    return gr.Error(tr(lang, "err_internal", ref=ref), print_exception=False)


def user_errors(fn):
    """Wrap a handler (plain or generator) so StudioError → gr.Error in the page's language (when the handler
    takes a request) and bugs → a logged id."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _to_gr_error(exc, _request(args, kwargs)) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _to_gr_error(exc, _request(args, kwargs)) from None

    return wrapper

