"""The remote engine: any OpenAI-compatible server (lmdeploy api_server or proxy, vLLM, another studio).

Replies stream as server-sent events read on a helper thread, so the caller can notice a cancel
within ~0.1 s even while the server is silent. Cancelling, or closing the generator, shuts the
socket down: that is how the server learns to stop generating.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from typing import Any, ClassVar, Iterator, Literal, Optional
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from studio.core.types import EngineInfo, GenParams, Message, TextDelta
from studio.engines.base import Encoded, EngineBase, LoadContext, Prepared
from studio.engines.openai_wire import (
    IMAGE_TOKENS, SseDecoder, Unreachable, base_url_problem, describe_failure, error_text, estimate_tokens,
    model_window, wire_messages,
)
from studio.engines.options import EngineOptions
from studio.errors import StudioError
from studio.families.base import ImageCost

DEFAULT_WINDOW = 4096  # when neither the config nor the server's /models says
POLL_S = 0.1  # how often a waiting caller checks its cancel flag
START_HINT = ("Start one, e.g. `lmdeploy serve api_server <model> --server-port 23333`, "
              "or fix engines.<name>.base_url in the config.")


class RemoteOptions(EngineOptions):
    """engine: openai_compat — an OpenAI-compatible server (lmdeploy api_server / proxy, vLLM, another studio)."""

    engine: Literal["openai_compat"] = "openai_compat"
    base_url: Optional[str] = Field(None, validate_default=True)  # e.g. http://gpu-node:23333/v1
    api_key: Optional[str] = Field(None, repr=False)
    api_key_env: Optional[str] = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # read the key from this variable
    remote_model: Optional[str] = None  # None: the server's only model
    timeout_s: float = Field(60.0, gt=0, le=3600)  # most seconds between two chunks of a reply
    connect_timeout_s: float = Field(5.0, gt=0, le=120)
    accepts_images: Optional[bool] = None  # None: what the /models entry says (a studio tells), else False
    max_batch_size: int = Field(32, ge=1, le=1024)  # how many browser users stream at once
    # Keys of other engines that people set here by mistake, and what to do instead.
    refused: ClassVar[dict[str, str]] = {
        "model_path": "not used by engine openai_compat; name the server's model with remote_model"}

    @model_validator(mode="before")
    @classmethod
    def _label(cls, data):
        # Without a model folder, the engine goes by the remote model's name (or the server's address).
        if isinstance(data, dict) and not data.get("label"):
            name = data.get("remote_model") or urlsplit(str(data.get("base_url") or "")).netloc or "openai_compat"
            data = {**data, "label": str(name)}
        return data

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: Optional[str]) -> str:
        if value is None:
            raise PydanticCustomError("missing", "required for engine: openai_compat (e.g. http://host:23333/v1)")
        problem = base_url_problem(value)
        if problem:
            raise PydanticCustomError("base_url", problem)
        return value.rstrip("/")

    def concurrency(self) -> int:
        """The server batches: max_batch_size requests at once."""
        return self.max_batch_size


def api_key_of(cfg: RemoteOptions) -> Optional[str]:
    """The API key: from the config, or from the environment variable it names; StudioError if that is unset."""
    if cfg.api_key_env:
        key = os.environ.get(cfg.api_key_env)
        if not key:
            raise StudioError(f"The environment variable {cfg.api_key_env} (api_key_env) is not set.",
                              f"Export the server's API key as {cfg.api_key_env}, or remove api_key_env.")
        return key
    return cfg.api_key


class OpenAICompatEngine(EngineBase):
    """A model behind an OpenAI-compatible HTTP server; the server batches concurrent requests."""

    batches = True
    tools = True  # the server decides: one that cannot call tools answers HTTP 400, shown as the error
    vision_hint = "Set accepts_images: true if the server's model reads images, or remove them."

    def __init__(self, cfg: RemoteOptions, client: Any, model: str, window: int, images: bool = False) -> None:
        super().__init__(cfg, window)
        self.cfg, self.client, self.model = cfg, client, model
        self.accepts_images = images
        self.host = urlsplit(cfg.base_url).netloc

    def label(self) -> str:
        """The server's model and where it is."""
        return f"{self.model} at {self.host}"

    def _encode(self, messages: list[Message], max_tiles: Optional[int], final: bool, tools=()) -> Encoded:
        """An estimate (no tokenizer here): characters / 3, + 4 per message, + IMAGE_TOKENS per image."""
        return Encoded(estimate_tokens(messages, tuple(tools)), messages)

    def _image_cost(self, image: Any, max_tiles: Optional[int]) -> ImageCost:
        return ImageCost(1, IMAGE_TOKENS)  # the server's real cost is unknown here

    def body(self, messages: list[Message], p: GenParams, tools: tuple[dict, ...] = ()) -> dict:
        """The JSON body of a streamed chat completion (with the tools the model may call)."""
        greedy = not p.do_sample or p.temperature == 0
        body = {"model": self.model, "messages": wire_messages(messages), "stream": True,
                "stream_options": {"include_usage": True}, "max_tokens": p.max_new_tokens,
                "temperature": 0.0 if greedy else p.temperature, "top_p": 1.0 if greedy else p.top_p,
                # Not in OpenAI's API, but lmdeploy and vLLM read them from the body.
                "top_k": 1 if greedy else p.top_k, "repetition_penalty": p.repetition_penalty}
        if p.seed is not None:
            body["seed"] = p.seed
        if p.stop:
            body["stop"] = list(p.stop)
        if tools:
            body["tools"] = [dict(t) for t in tools]
        return body

    def _generate(self, prepared: Prepared, cancel: threading.Event) -> Iterator[TextDelta]:
        return self._serve(self.body(prepared.messages, prepared.params, prepared.tools), cancel)

    def _serve(self, body: dict, cancel: threading.Event) -> Iterator[TextDelta]:
        lines: queue.Queue = queue.Queue()
        stop = threading.Event()
        sock: list[socket.socket] = []  # filled by the reader once the response has started
        reader = threading.Thread(target=self._read, args=(body, lines, stop, sock), daemon=True,
                                  name=f"remote-{self.host}")
        reader.start()
        decoder, text, finish, error = SseDecoder(), [], None, None
        try:
            while finish is None:
                try:
                    kind, value = lines.get(timeout=POLL_S)
                except queue.Empty:
                    kind, value = "idle", None
                if cancel.is_set():
                    finish = "cancelled"
                elif kind == "line":
                    for piece, reason, err in decoder.feed(value):
                        if piece:
                            text.append(piece)
                            yield TextDelta(text=piece)
                        finish, error = finish or reason, error or err
                elif kind == "end":
                    finish, error = decoder.end()
                elif kind == "fail":
                    finish, error = "error", value
            if error and body.get("tools") and error.startswith("HTTP 400"):
                error += (" (the request offered tools: the server may not support tool calls; lmdeploy needs "
                          "`api_server … --tool-call-parser internlm`)")
            if not error and finish != "cancelled":
                yield from (TextDelta(tool_call=call) for call in decoder.tool_calls())
            if error:
                shown = sum(map(len, text))
                where = f" (the reply broke off after {shown} characters)" if shown else ""
                error = f"{self.host}: {error}{where}"
            yield TextDelta(finish_reason=finish, error=error, prompt_tokens=decoder.prompt_tokens,
                            completion_tokens=decoder.completion_tokens or decoder.chunks)
        finally:
            stop.set()
            _shut(sock)  # a reader blocked in recv wakes up, and the server sees the stream closed

    def _read(self, body: dict, lines: queue.Queue, stop: threading.Event, sock: list) -> None:
        """Reader thread: POST the request and pass SSE lines on until the end, a failure, or `stop`."""
        try:
            with self.client.stream("POST", self.cfg.base_url + "/chat/completions", json=body) as resp:
                stream = resp.extensions.get("network_stream")
                if stream is not None and stream.get_extra_info("socket") is not None:
                    sock.append(stream.get_extra_info("socket"))
                if stop.is_set():
                    return
                # Once a response has been read to its end, its connection goes back to the pool for the
                # next request: forget the socket before saying so, or the consumer's clean-up would shut
                # down a connection another request may already be using.
                if resp.status_code != 200:
                    message = f"HTTP {resp.status_code}: {error_text(resp)}"
                    sock.clear()
                    lines.put(("fail", message))
                    return
                ctype = resp.headers.get("content-type", "")
                if "text/event-stream" not in ctype:
                    snippet = error_text(resp, json_message=False)
                    sock.clear()
                    lines.put(("fail", f"expected a stream of server-sent events, got {ctype or 'no content type'}: "
                                       f"{snippet}"))
                    return
                for line in resp.iter_lines():
                    if stop.is_set():
                        return
                    lines.put(("line", line))
                sock.clear()
                lines.put(("end", None))
        except Exception as exc:  # every failure becomes the stream's error delta, never a raise
            if not stop.is_set():
                lines.put(("fail", describe_failure(exc, self.cfg)))

    def info(self) -> EngineInfo:
        """Remote model, server address and context window; the token count is an estimate."""
        return EngineInfo(
            engine="openai_compat", model=self.model, family="remote", device=f"remote: {self.host}",
            dtype="remote", context_window=self.context_window, accepts_images=self.accepts_images, batches=True,
            extra={"base_url": self.cfg.base_url,
                   "token_count": f"estimate: characters/3 + 4 per message + {IMAGE_TOKENS} per image"},
        )

    def close(self) -> None:
        """Close the HTTP connections; the engine is unusable afterwards."""
        self._closed = True
        self.client.close()


def _shut(sock: list) -> None:
    for s in sock:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed by the reader
            pass


def make_client(cfg: RemoteOptions) -> Any:
    """An httpx client with the configured key and timeouts (the read timeout applies between chunks)."""
    import httpx

    key = api_key_of(cfg)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s)
    return httpx.Client(headers=headers, timeout=timeout, limits=httpx.Limits(max_connections=256))


def list_models(client: Any, cfg: RemoteOptions) -> list[dict]:
    """The server's /models entries; StudioError saying where and why when it cannot be read."""
    url = cfg.base_url + "/models"
    try:
        resp = client.get(url, timeout=min(cfg.timeout_s, 30.0))
    except Exception as exc:
        raise Unreachable(f"Cannot reach the model server at {url}: {describe_failure(exc, cfg)}.", START_HINT) from None
    if resp.status_code in (401, 403):
        raise StudioError(f"The model server at {url} refused the API key (HTTP {resp.status_code}: "
                          f"{error_text(resp)}).", "Set api_key or api_key_env to the key the server expects.")
    if resp.status_code != 200:
        raise StudioError(f"The model server at {url} answered HTTP {resp.status_code}: {error_text(resp)}.",
                          "base_url is the API root, usually ending in /v1 (e.g. http://host:23333/v1).")
    try:
        data = resp.json()["data"]
        assert isinstance(data, list) and all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data)
    except Exception:
        raise StudioError(f"{url} did not answer with an OpenAI model list: {error_text(resp, json_message=False)}",
                          "Is base_url an OpenAI-compatible server's API root (…/v1)?") from None
    return data


def load_openai_compat(cfg: RemoteOptions, ctx: LoadContext) -> OpenAICompatEngine:
    """Connect: read the server's model list once and pick the configured (or only) model."""
    ctx.progress(0.1, f"asking {cfg.base_url} for its models")
    client = make_client(cfg)
    try:
        models = list_models(client, cfg)
        ids = [m["id"] for m in models]
        if cfg.remote_model and cfg.remote_model not in ids:
            raise StudioError(f"The server at {cfg.base_url} has no model {cfg.remote_model!r}; "
                              f"it serves: {', '.join(ids) or 'nothing'}.", "Set remote_model to one of those.")
        if not cfg.remote_model and len(ids) != 1:
            raise StudioError(f"The server at {cfg.base_url} serves {len(ids)} models ({', '.join(ids) or 'none'}).",
                              "Set remote_model to the one this tab should use.")
        model = cfg.remote_model or ids[0]
        entry = next(m for m in models if m["id"] == model)
    except BaseException:
        client.close()
        raise
    # The config decides; otherwise a studio serving the API says whether its model reads images.
    images = cfg.accepts_images if cfg.accepts_images is not None else entry.get("accepts_images") is True
    return OpenAICompatEngine(cfg, client, model, cfg.context_window or model_window(entry) or DEFAULT_WINDOW, images)
