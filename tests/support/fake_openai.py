"""A local OpenAI-compatible server for remote-engine tests: a threaded HTTP/1.1 server on 127.0.0.1.

Every route lives under an optional mode prefix, so one server can misbehave per base URL:
`base_url(mode)` → http://127.0.0.1:PORT/<mode>/v1 (no prefix for the well-behaved server).
  GET  /v1/models             {"data": [{"id": model, "max_model_len": 2048}]}
  POST /v1/chat/completions   SSE (chunked): "echo: <last user text>" one word per chunk, a finish chunk,
                              a usage chunk, [DONE]. Modes:
    long        400 words ("w0 w1 …"), `word_delay` apart: for cancel tests
    slowfirst   waits `slow_s` before the response starts
    slowchunks  one word, then `slow_s` of silence, then the rest
    error500    HTTP 500 with an OpenAI-style error body
    html        200 with an HTML page instead of SSE
    garbage     200 text/event-stream holding lines that are not SSE
    notjson     an SSE data line that is not JSON
    drop        three words, then the connection is cut (no final chunk)
    errorevent  two words, then `data: {"error": …}`, then the stream ends
    toolcall    "Checking." then the call `tool_call` (name, arguments JSON) as OpenAI streams tool_calls:
                id, type and name first, the arguments in three pieces; finish_reason "tool_calls"
    notools     HTTP 400 "tools are not supported" when the request offers tools (a server without a parser)
`next_mode`, when set, makes the next chat completion misbehave in that mode whatever its URL (once).
With `api_key` set, requests without `Authorization: Bearer <key>` get HTTP 401.
`words_sent` counts words actually written; `streams_open` how many replies are still being written.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

MODES = {"long", "slowfirst", "slowchunks", "error500", "html", "garbage", "notjson", "drop", "errorevent",
         "toolcall", "notools"}


class _Handler(BaseHTTPRequestHandler):
    server: "FakeOpenAI"
    protocol_version = "HTTP/1.1"  # chunked streaming and keep-alive, as real servers do

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _route(self) -> tuple[str, str]:
        parts = self.path.split("?")[0].strip("/").split("/")
        mode = parts.pop(0) if parts and parts[0] in MODES else ""
        return mode, "/" + "/".join(parts)

    def send_body(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, data) -> None:
        self.send_body(status, "application/json", json.dumps(data).encode())

    def _authorised(self) -> bool:
        if self.server.api_key and self.headers.get("Authorization") != f"Bearer {self.server.api_key}":
            self.send_json(401, {"error": {"message": "Invalid API key.", "type": "invalid_request_error"}})
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        mode, path = self._route()
        if not self._authorised():
            return
        if path == "/v1/models":
            return self.send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "owned_by": "fake", "max_model_len": 2048} for m in self.server.models]})
        self.send_json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:  # noqa: N802
        mode, path = self._route()
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self._authorised():
            return
        if path != "/v1/chat/completions":
            return self.send_json(404, {"detail": "Not Found"})
        self.server.bodies.append(body)
        with self.server.lock:
            mode, self.server.next_mode = self.server.next_mode or mode, None
        try:
            self._complete(mode, body)
        except (BrokenPipeError, ConnectionResetError):  # the client went away: stop producing, as servers do
            self.close_connection = True

    # --- the reply --------------------------------------------------------------------------------

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _event(self, obj) -> None:
        self._chunk(b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n")

    def _delta(self, text: str = "", finish: Optional[str] = None) -> dict:
        return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": self.server.models[0],
                "choices": [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]}

    def _words(self, mode: str, body: dict) -> list[str]:
        if mode == "long":
            return [f"w{i}" for i in range(400)]
        last = body["messages"][-1]["content"] if body.get("messages") else ""
        if isinstance(last, list):
            last = " ".join(p.get("text", "") for p in last if p.get("type") == "text")
        return ["echo:"] + str(last).split(" ")

    def _complete(self, mode: str, body: dict) -> None:
        srv = self.server
        if mode == "slowfirst":
            srv.stopping.wait(srv.slow_s)
        if mode == "error500":
            return self.send_json(500, {"error": {"message": "model crashed: CUDA out of memory", "code": 500}})
        if mode == "notools" and body.get("tools"):
            return self.send_json(400, {"error": {"message": "This server does not support tools.",
                                                  "type": "invalid_request_error"}})
        if mode == "html":
            return self.send_body(200, "text/html", b"<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if mode == "garbage":
            self._chunk(b"Hello, this is not an event stream\n")
            return self._chunk(b"")
        if mode == "notjson":
            self._event(b"{broken")
            return self._chunk(b"")
        if mode == "toolcall":
            return self._stream_call()
        words = self._words(mode, body)[: body.get("max_tokens") or 10**6]
        with srv.lock:
            srv.streams_open += 1
        try:
            self._stream_words(mode, words, body)
        finally:
            with srv.lock:
                srv.streams_open -= 1

    def _stream_words(self, mode: str, words: list[str], body: dict) -> None:
        srv = self.server
        for i, word in enumerate(words):
            if srv.stopping.is_set():
                return
            if mode == "drop" and i == 3:
                self.close_connection = True  # no final chunk: the client sees the body cut off
                return
            if mode == "errorevent" and i == 2:
                self._event({"error": {"message": "engine died while generating", "code": 500}})
                return self._chunk(b"")
            self._event(self._delta(("" if i == 0 else " ") + word))
            with srv.lock:
                srv.words_sent += 1
            if mode == "slowchunks" and i == 0:
                srv.stopping.wait(srv.slow_s)
            elif srv.word_delay:
                time.sleep(srv.word_delay)
        full = len(words) == (body.get("max_tokens") or -1)
        self._event(self._delta(finish="length" if full else "stop"))
        self._event({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [],
                     "usage": {"prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7 + len(words)}})
        self._event(b"[DONE]")
        self._chunk(b"")


    def _stream_call(self) -> None:
        name, arguments = self.server.tool_call
        self._event(self._delta("Checking."))
        third = max(1, len(arguments) // 3)
        pieces = [{"index": 0, "id": "call_fake1", "type": "function", "function": {"name": name, "arguments": ""}}]
        pieces += [{"index": 0, "function": {"arguments": arguments[i:i + third]}}
                   for i in range(0, len(arguments), third)]
        for piece in pieces:
            chunk = self._delta()
            chunk["choices"][0]["delta"] = {"tool_calls": [piece]}
            self._event(chunk)
        self._event(self._delta(finish="tool_calls"))
        self._event(b"[DONE]")
        self._chunk(b"")


class FakeOpenAI(ThreadingHTTPServer):
    """Serves the routes above on a free port until closed; use as a context manager."""

    daemon_threads = True

    def __init__(self, models: tuple[str, ...] = ("fake-model",), api_key: Optional[str] = None,
                 slow_s: float = 3.0, word_delay: float = 0.005) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.models, self.api_key, self.slow_s, self.word_delay = list(models), api_key, slow_s, word_delay
        self.bodies: list[dict] = []
        self.next_mode: Optional[str] = None
        self.tool_call = ("get_weather", '{"city": "Paris"}')  # what mode toolcall calls
        self.words_sent = 0
        self.streams_open = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, name="fake-openai", daemon=True)

    def base_url(self, mode: str = "") -> str:
        """The API root (…/v1) of the well-behaved server, or of one misbehaving in `mode`."""
        assert mode == "" or mode in MODES, mode
        return f"http://127.0.0.1:{self.server_address[1]}" + (f"/{mode}" if mode else "") + "/v1"

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self._thread.join(5)
