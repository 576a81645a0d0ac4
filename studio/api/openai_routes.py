"""The OpenAI-compatible API (/v1/models, /v1/chat/completions) over the studio's engines."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from typing import AsyncIterator, Callable, Optional

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

# Not `from studio.api import schemas`: that reads the package, whose api_routes imports this module.
import studio.api.schemas as schemas
from studio.api.auth import LaunchInfo, refusal
from studio.api.streaming import BodyLimit, EngineStream, cancel_on_disconnect, in_thread
from studio.errors import InputError, ModelNotReady, StudioError
from studio.services import Services
from studio.tasks import completions
from studio.tasks.completions import Job, ParamError, Started, ToolCallOut, UnknownModel

log = logging.getLogger(__name__)
MAX_BODY = 64 * 2**20  # a few base64 images fit; more is refused before it fills memory
FINISH = {"stop": "stop", "length": "length", "cancelled": "stop"}  # "cancelled": the client is gone anyway


class ApiError(Exception):
    """An error answered as OpenAI's {"error": {...}} with an HTTP status."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.body = status, schemas.error_body(message, type_, param, code)


def _from_studio(exc: StudioError) -> ApiError:
    text = str(exc)
    if isinstance(exc, UnknownModel):
        return ApiError(404, text, param=exc.param, code=exc.code)
    if isinstance(exc, ParamError):
        return ApiError(400, text, param=exc.param, code=exc.code)
    if isinstance(exc, InputError):
        return ApiError(400, text)
    if isinstance(exc, ModelNotReady):
        return ApiError(503, text, "server_error", code="model_not_ready")
    return ApiError(500, text, "server_error")


def _param(loc: tuple) -> Optional[str]:
    """A pydantic location as OpenAI names params: messages[0].content[1].image_url."""
    out, previous = "", None
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        # Union members ("str", "list[…]") and a discriminator tag repeated by its field are pydantic's.
        if part == "str" or "[" in str(part) or part == previous:
            continue
        previous = part
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _install_errors(api: FastAPI) -> None:
    async def api_error(_request, exc: ApiError):
        return JSONResponse(exc.body, status_code=exc.status,
                            headers={"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)

    async def studio_error(request, exc: StudioError):
        return await api_error(request, _from_studio(exc))

    async def invalid(request, exc: RequestValidationError):
        err = max(exc.errors(), key=lambda e: len(e.get("loc", ())))  # the most specific of a union's errors
        param = _param(tuple(err.get("loc", ())))
        return await api_error(request, ApiError(400, f"{param or 'body'}: {err['msg']}", param=param))

    async def http_error(request, exc: StarletteHTTPException):
        return await api_error(request, ApiError(exc.status_code, str(exc.detail), code=str(exc.status_code)))

    api.add_exception_handler(ApiError, api_error)
    api.add_exception_handler(StudioError, studio_error)
    api.add_exception_handler(RequestValidationError, invalid)
    api.add_exception_handler(StarletteHTTPException, http_error)


def _sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


async def _events(job: Job, started: Started, events: AsyncIterator, include_usage: bool) -> AsyncIterator[str]:
    """The SSE body: role, content deltas, finish (or an error event), optional usage, [DONE]."""
    cid, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
    yield _sse(schemas.chunk(cid, job.model, created, {"role": "assistant", "content": ""}))
    prompt, done, called = started.prompt_tokens, 0, False
    try:
        async for delta in events:
            if isinstance(delta, ToolCallOut):
                called = True
                for piece in schemas.call_pieces(delta.index, delta.call):
                    yield _sse(schemas.chunk(cid, job.model, created, {"tool_calls": [piece]}))
                continue
            if delta.text:
                yield _sse(schemas.chunk(cid, job.model, created, {"content": delta.text}))
            if delta.finish_reason == "error":
                yield _sse(schemas.error_body(delta.error or "Generation failed.", "server_error"))
                break
            if delta.finish_reason:
                prompt, done = delta.prompt_tokens or prompt, delta.completion_tokens
                yield _sse(schemas.chunk(cid, job.model, created, {}, _finish(delta.finish_reason, called)))
    except StudioError as exc:
        yield _sse(schemas.error_body(str(exc), "server_error"))
    except Exception:  # never a hung or silently cut stream: say so, with an id for the log
        ref = secrets.token_hex(4)
        log.exception("API stream failed (id %s)", ref)
        yield _sse(schemas.error_body(f"Internal error (id {ref}).", "server_error"))
    else:
        if include_usage:
            yield _sse(schemas.chunk(cid, job.model, created, tokens=schemas.usage(prompt, done)))
    yield _sse("[DONE]")


def _finish(reason: str, called: bool) -> str:
    """OpenAI's finish reason: "tool_calls" when the reply ended in calls (unless it was cut at the length)."""
    return "tool_calls" if called and reason == "stop" else FINISH[reason]


async def _collect(job: Job, started: Started, events: AsyncIterator) -> dict:
    """The whole reply as one chat.completion; an engine error becomes a 500."""
    text, last, calls = "", None, []
    async for delta in events:
        if isinstance(delta, ToolCallOut):
            calls.append(delta.call)
            continue
        text += delta.text
        last = delta if delta.finish_reason else last
    if last is None or last.finish_reason == "error":
        raise ApiError(500, (last.error if last else None) or "Generation ended without a result.", "server_error")
    tokens = schemas.usage(last.prompt_tokens or started.prompt_tokens, last.completion_tokens)
    return schemas.completion(f"chatcmpl-{secrets.token_hex(12)}", job.model, text,
                              _finish(last.finish_reason, bool(calls)), tokens, calls)


def build_api(services: Services, launch: Callable[[], LaunchInfo]) -> FastAPI:
    """The /v1 app: mount it on the studio's server (see studio.api.mount)."""
    api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    _install_errors(api)
    api.add_middleware(BodyLimit, limit=MAX_BODY,
                       refuse=lambda message: JSONResponse(schemas.error_body(message), status_code=413))
    keys = list(services.config.api.keys)

    def authorised(request: Request) -> None:
        reason = refusal(keys, launch(), request.headers.get("authorization"))
        if reason:
            raise ApiError(401, reason, code="invalid_api_key")

    @api.get("/models", dependencies=[Depends(authorised)])
    async def list_models() -> dict:
        pool, created = services.engines, int(time.time())
        cards = []
        for model_id, engine in completions.model_ids(services).items():
            info = pool.state(engine).info
            cards.append(schemas.model_card(model_id, engine, pool.label(engine),
                                            info.accepts_images if info else None, created))
        return {"object": "list", "data": cards}

    @api.post("/chat/completions", dependencies=[Depends(authorised)])
    async def chat_completions(body: schemas.ChatCompletionRequest, request: Request):
        job = await run_in_threadpool(completions.prepare, services, body.model_dump(exclude_none=True))
        cancel = threading.Event()
        events = in_thread(lambda: completions.run(services, job, cancel))
        try:
            async with cancel_on_disconnect(request, cancel):
                started = await anext(events)  # waits for the model; prompt errors are raised here, as 4xx
                if not body.stream:
                    return JSONResponse(await _collect(job, started, events))
        except (ApiError, StudioError):
            raise
        except Exception as exc:  # a bug: logged with an id the user can quote, answered OpenAI-style
            ref = secrets.token_hex(4)
            log.exception("API request failed (id %s)", ref)
            raise ApiError(500, f"Internal error (id {ref}).", "server_error") from exc
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return EngineStream(_events(job, started, events, include_usage), cancel)

    return api
