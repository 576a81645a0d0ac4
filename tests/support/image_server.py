"""A local image-search service for provider tests: a threaded HTTP server on 127.0.0.1.

Search routes (JSON unless said otherwise):
  /search?q=..&k=..  {"images": [{"url": "/img/red.png", ...}, {"url": <absolute>/img/blue.jpg}]}
  /list              a plain list of the same two image URLs
  /slow              sleeps `slow_s` before answering /list's JSON
  /error             HTTP 500
  /html              an HTML page instead of JSON
  /shape             JSON, but neither a list nor {"images": [...]}
  /mixed             one good image and one of each failing image below
Image routes:
  /img/red.png, /img/blue.jpg   good pictures
  /page.html                    an HTML page where an image should be
  /img/huge.png                 a valid PNG of `huge_bytes` bytes, with Content-Length
  /img/endless.png              a PNG header followed by bytes without end, no Content-Length
  /img/broken.jpg               a JPEG cut in half, served as image/jpeg
  /img/slow.png                 sleeps `slow_s` first
  /redirect-loop, /redirect-file  a redirect to itself, a redirect to file:///etc/passwd
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from tests.support.hostile_images import encode, half, noise

GOOD = ["/img/red.png", "/img/blue.jpg"]
FAILING = ["/page.html", "/img/huge.png", "/img/endless.png", "/img/broken.jpg", "/img/slow.png",
           "/redirect-loop", "/redirect-file"]


class _Handler(BaseHTTPRequestHandler):
    server: "ImageServer"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        parts = urlsplit(self.path)
        self.server.requests.append(self.path)
        route = getattr(self, "route_" + parts.path.strip("/").replace("/", "_").replace(".", "_").replace("-", "_"),
                        None)
        if route is None:
            return self.send(404, "text/plain", b"not found")
        try:
            route(parse_qs(parts.query))
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first, as it should
            pass

    def send(self, status: int, ctype: str, body: bytes, length: bool = True, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, data) -> None:
        self.send(200, "application/json", json.dumps(data).encode())

    # --- search routes ----------------------------------------------------------------------------

    def route_search(self, query) -> None:
        self.send_json({"images": [{"url": GOOD[0], "caption": "red", "score": 0.9},
                                   {"url": self.server.url(GOOD[1]), "caption": "blue"}]})

    def route_list(self, query) -> None:
        self.send_json([self.server.url(p) for p in GOOD])

    def route_slow(self, query) -> None:
        self.server.stopping.wait(self.server.slow_s)
        self.route_list(query)

    def route_error(self, query) -> None:
        self.send(500, "text/plain", b"internal server error")

    def route_html(self, query) -> None:
        self.send(200, "text/html; charset=utf-8", b"<!doctype html><html><body>Search</body></html>")

    def route_shape(self, query) -> None:
        self.send_json({"results": "none"})

    def route_mixed(self, query) -> None:
        self.send_json([self.server.url(GOOD[0])] + [self.server.url(p) for p in FAILING] + ["file:///etc/passwd"])

    # --- image routes -----------------------------------------------------------------------------

    def route_img_red_png(self, query) -> None:
        self.send(200, "image/png", encode(Image.new("RGB", (64, 48), (255, 0, 0)), "PNG"))

    def route_img_blue_jpg(self, query) -> None:
        self.send(200, "image/jpeg", encode(Image.new("RGB", (48, 64), (0, 0, 255)), "JPEG"))

    def route_page_html(self, query) -> None:
        self.send(200, "text/html", b"<html><body><img src='/img/red.png'></body></html>")

    def route_img_huge_png(self, query) -> None:
        self.send(200, "image/png", encode(noise((400, 300)), "PNG"))

    def route_img_endless_png(self, query) -> None:
        self.send(200, "image/png", encode(noise((16, 16)), "PNG"), length=False)
        chunk = bytes(64 * 1024)
        while not self.server.stopping.is_set():
            self.wfile.write(chunk)

    def route_img_broken_jpg(self, query) -> None:
        self.send(200, "image/jpeg", half(encode(noise((200, 150)), "JPEG")))

    def route_img_slow_png(self, query) -> None:
        self.server.stopping.wait(self.server.slow_s)
        self.route_img_red_png(query)

    def route_redirect_loop(self, query) -> None:
        self.send(302, "text/plain", b"", headers={"Location": "/redirect-loop"})

    def route_redirect_file(self, query) -> None:
        self.send(302, "text/plain", b"", headers={"Location": "file:///etc/passwd"})


class ImageServer(ThreadingHTTPServer):
    """Serves the routes above on a free port until closed; use as a context manager."""

    daemon_threads = True

    def __init__(self, slow_s: float = 2.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.slow_s = slow_s
        self.requests: list[str] = []
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, name="image-server", daemon=True)

    def url(self, path: str) -> str:
        """The absolute URL of a route."""
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def __enter__(self) -> "ImageServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self._thread.join(5)
