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
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

from studio.config import EngineConfig
from studio.core.types import EngineInfo, GenerationRequest, Message, TextDelta
from studio.engines.base import LoadContext
from studio.engines.openai_wire import (
    IMAGE_TOKENS, SseDecoder, Unreachable, describe_failure, error_text, estimate_tokens, model_window,
    wire_messages,
)
from studio.errors import InputError, ModelNotReady, StudioError

DEFAULT_WINDOW = 4096  # when neither the config nor the server's /models says
POLL_S = 0.1  # how often a waiting caller checks its cancel flag
START_HINT = ("Start one, e.g. `lmdeploy serve api_server <model> --server-port 23333`, "
              "or fix engines.<name>.base_url in the config.")


def api_key_of(cfg: EngineConfig) -> Optional[str]:
    """The API key: from the config, or from the environment variable it names; StudioError if that is unset."""
    if cfg.api_key_env:
        key = os.environ.get(cfg.api_key_env)
        if not key:
            raise StudioError(f"The environment variable {cfg.api_key_env} (api_key_env) is not set.",
                              f"Export the server's API key as {cfg.api_key_env}, or remove api_key_env.")
        return key
    return cfg.api_key


class OpenAICompatEngine:
    """A model behind an OpenAI-compatible HTTP server; the server batches concurrent requests."""

    batches = True

    def __init__(self, cfg: EngineConfig, client: Any, model: str, window: int, images: bool = False) -> None:
        self.cfg, self.client, self.model = cfg, client, model
        self.accepts_images = images
        self.context_window = window
        self.host = urlsplit(cfg.base_url).netloc
        self._closed = False

    def _messages(self, messages: list[Message]) -> list[Message]:
        if self.cfg.system_prompt and not any(m.role == "system" for m in messages):
            return [Message.of("system", self.cfg.system_prompt), *messages]
        return list(messages)

    def count_tokens(self, messages: list[Message], max_tiles: Optional[int] = None) -> int:
        """An estimate (no tokenizer here): characters / 3, + 4 per message, + IMAGE_TOKENS per image."""
        return estimate_tokens(self._messages(messages))

    def image_cost(self, image: Any, max_tiles: Optional[int] = None) -> Any:
        """The estimate one image adds to a prompt (the server's real cost is unknown here)."""
        from studio.families.base import ImageCost

        if not self.accepts_images:
            raise InputError(f"This model ({self.model}) reads text only.", "Use a vision model's server.")
        return ImageCost(1, IMAGE_TOKENS)

    def body(self, request: GenerationRequest) -> dict:
        """The JSON body of a streamed chat completion for `request`."""
        p = request.params
        greedy = not p.do_sample or p.temperature == 0
        body = {"model": self.model, "messages": wire_messages(self._messages(request.messages)), "stream": True,
                "stream_options": {"include_usage": True}, "max_tokens": p.max_new_tokens,
                "temperature": 0.0 if greedy else p.temperature, "top_p": 1.0 if greedy else p.top_p,
                # Not in OpenAI's API, but lmdeploy and vLLM read them from the body.
                "top_k": 1 if greedy else p.top_k, "repetition_penalty": p.repetition_penalty}
        if p.seed is not None:
            body["seed"] = p.seed
        if p.stop:
            body["stop"] = list(p.stop)
        return body

    def stream(self, request: GenerationRequest) -> Iterator[TextDelta]:
        """Yield text deltas, the last with a finish reason; InputError at once for images it cannot send."""
        if self._closed:
            raise ModelNotReady("This model was unloaded.", "Restart the studio to load it again.")
        images = sum(len(m.images) for m in request.messages)
        if images and not self.accepts_images:
            raise InputError(
                f"This model ({self.model} at {self.host}) is configured as text only; the conversation has "
                f"{images} image(s).", "Set accepts_images: true if the server's model reads images, or remove them.")
        return self._serve(self.body(request), request)

    def _serve(self, body: dict, request: GenerationRequest) -> Iterator[TextDelta]:
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
                if request.cancel.is_set():
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


def make_client(cfg: EngineConfig) -> Any:
    """An httpx client with the configured key and timeouts (the read timeout applies between chunks)."""
    import httpx

    key = api_key_of(cfg)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s)
    return httpx.Client(headers=headers, timeout=timeout, limits=httpx.Limits(max_connections=256))


def list_models(client: Any, cfg: EngineConfig) -> list[dict]:
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


def load_openai_compat(cfg: EngineConfig, ctx: LoadContext) -> OpenAICompatEngine:
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
