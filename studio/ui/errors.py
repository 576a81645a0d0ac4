"""One place where exceptions become messages a user can act on."""

from __future__ import annotations

import functools
import inspect
import logging
import uuid

import gradio as gr

from studio.errors import StudioError

log = logging.getLogger("studio.ui")


def _to_gr_error(exc: BaseException) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, StudioError):
        return gr.Error(str(exc), print_exception=False)
    ref = uuid.uuid4().hex[:8]
    log.exception("internal error %s", ref, exc_info=exc)
    return gr.Error(f"Internal error (id {ref}); the studio keeps running. The log has the details.", print_exception=False)


def user_errors(fn):
    """Wrap a handler (plain or generator) so StudioError → gr.Error and bugs → a logged id."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _to_gr_error(exc) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _to_gr_error(exc) from None

    return wrapper
