"""A local stand-in for the arXiv API: a threaded HTTP server on 127.0.0.1 (tests never reach the internet).

Routes:
  /api/query      the stored Atom sample (two papers); every query string is kept in `queries`
  /empty          an Atom feed without entries
  /api-error      an Atom feed holding arXiv's error entry
  /error          HTTP 500
  /garbage        bytes that are not XML
  /html           an HTML page
  /entities       XML declaring entities (a billion-laughs shape)
  /hang           never answers until the server stops
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

SAMPLE = (Path(__file__).parent / "arxiv_atom.xml").read_bytes()
FEED = b'<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">%s</feed>'
ERROR_ENTRY = (b"<entry><id>http://arxiv.org/api/errors#incorrect_id_format_for_1234.5678</id><title>Error</title>"
               b"<summary>incorrect id format for 1234.5678</summary></entry>")
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
          b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>&lol2;</title></entry></feed>')
BODIES = {"/api/query": SAMPLE, "/empty": FEED % b"", "/api-error": FEED % ERROR_ENTRY,
          "/garbage": b"\x00\x01 this is not xml <<<", "/html": b"<!doctype html><html><body>Hi</body></html>",
          "/entities": LAUGHS}


class _Handler(BaseHTTPRequestHandler):
    server: ArxivServer

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        parts = urlsplit(self.path)
        self.server.queries.append(parse_qs(parts.query))
        try:
            if parts.path == "/hang":
                self.server.stopping.wait()
                return
            if parts.path == "/error":
                return self._send(500, b"Internal Server Error")
            body = BODIES.get(parts.path)
            self._send(200, body) if body is not None else self._send(404, b"not found")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first, as it should
            pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/atom+xml; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ArxivServer(ThreadingHTTPServer):
    """The fake API; `url(route)` is the base URL a tool is pointed at."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.queries: list[dict] = []
        self.stopping = threading.Event()

    def url(self, route: str = "/api/query") -> str:
        """The server's address for one route."""
        return f"http://127.0.0.1:{self.server_address[1]}{route}"


@contextmanager
def arxiv_server() -> Iterator[ArxivServer]:
    """A running fake arXiv API, stopped (hanging requests released) on exit."""
    server = ArxivServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()
