"""A local stand-in for the Hugging Face and ModelScope hubs: a threaded HTTP server on 127.0.0.1 serving
repositories from a folder (<root>/<owner>/<name>/…), with fault injection and a log of what it served.

Hugging Face routes (what huggingface_hub and the studio ask):
  GET  /api/models/{repo}/revision/{rev}          {"id", "sha", "siblings"}
  GET  /api/models/{repo}/tree/{rev}?recursive=…  [{"type": "file", "path", "size", "oid", "lfs"?}]
  HEAD|GET /{repo}/resolve/{rev}/{path}            the bytes, honouring Range: bytes=N-
ModelScope routes:
  GET  /api/v1/models/{repo}/revisions
  GET  /api/v1/models/{repo}/repo/files?Revision=&Recursive=   {"Code": 200, "Data": {"Files": [...]}}
  GET  /api/v1/models/{repo}/repo?Revision=&FilePath=          the bytes, honouring Range
Unknown repositories get 404 (X-Error-Code: RepoNotFound)."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, unquote, urlsplit

LFS_MIN = 1024  # files at least this big are served as LFS files (sha256), smaller ones as git blobs (sha1)
SEND = 64 * 1024


@dataclass
class Served:
    """One request as the hub saw it."""

    hub: str  # "hf" | "ms"
    method: str
    repo: str
    path: str  # the file, or "" for API routes
    start: int  # the Range start asked for (0 without Range)
    sent: int  # body bytes written
    status: int
    authorization: str = ""
    cookie: str = ""


@dataclass
class Faults:
    """What to break; counts go down as they are used."""

    refuse: dict[str, int] = field(default_factory=dict)  # repo → HTTP status for every route
    drop_after: dict[str, list[int]] = field(default_factory=dict)  # file → [bytes, times]: close mid-body
    hold_after: dict[str, int] = field(default_factory=dict)  # file → bytes; then wait for `release`
    corrupt: dict[str, int] = field(default_factory=dict)  # file → times its bytes are served damaged
    chunk_delay_s: float = 0.0  # a pause after each 64 KiB, for a download slow enough to cancel
    before_body: Optional[Callable[[str], None]] = None  # called with the file just before its bytes


def blob_sha1(data: bytes) -> str:
    """The git blob id of `data`."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub(ThreadingHTTPServer):
    """Serves every <root>/<owner>/<name> folder as a repository on both hubs' routes."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = Path(root)
        self.faults = Faults()
        self.served: list[Served] = []
        self.release = threading.Event()
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        """The endpoint to point a client at."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def files(self, repo: str) -> dict[str, Path]:
        """The repository's files by path (sorted)."""
        base = self.root / repo
        return {p.relative_to(base).as_posix(): p for p in sorted(base.rglob("*")) if p.is_file()}

    def sha(self, repo: str) -> str:
        """The repository's one commit id."""
        return hashlib.sha1(repo.encode()).hexdigest()

    def sent(self, path: str, hub: Optional[str] = None) -> int:
        """Body bytes served for file `path` so far."""
        return sum(s.sent for s in self.served if s.path == path and s.method == "GET" and hub in (None, s.hub))

    def gets(self, path: str) -> list[Served]:
        """The GET requests for file `path`."""
        return [s for s in self.served if s.path == path and s.method == "GET"]

    def entry(self, repo: str, rel: str, path: Path) -> dict:
        """The Hugging Face tree entry of a file."""
        data = path.read_bytes()
        item = {"type": "file", "path": rel, "size": len(data), "oid": blob_sha1(data)}
        if len(data) >= LFS_MIN:
            item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return item


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_GET(self) -> None:
        self._route("GET")

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        try:
            if path.startswith("/api/v1/models/"):
                return self._modelscope(method, path[len("/api/v1/models/"):], query)
            if path.startswith("/api/models/"):
                return self._hf_api(path[len("/api/models/"):])
            m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
            if m:
                return self._file("hf", method, m.group(1), m.group(3))
            self._json(404, {"error": "not found"}, "hf", "", method)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _known(self, hub: str, repo: str, method: str) -> bool:
        status = self.server.faults.refuse.get(repo)
        if status:
            self._json(status, {"error": "refused", "Code": status, "Message": "refused"}, hub, repo, method)
            return False
        if not (self.server.root / repo).is_dir() or repo.count("/") != 1:
            self._json(404, {"error": "Repository not found", "Code": 404, "Message": "model not exist"},
                       hub, repo, method, {"X-Error-Code": "RepoNotFound"})
            return False
        return True

    def _hf_api(self, rest: str) -> None:
        bits = rest.split("/")
        repo = "/".join(bits[:2])
        if not self._known("hf", repo, "GET"):
            return
        files = self.server.files(repo)
        if len(bits) > 3 and bits[2] == "revision":
            body = {"id": repo, "sha": self.server.sha(repo), "siblings": [{"rfilename": r} for r in files]}
            return self._json(200, body, "hf", repo, "GET")
        if len(bits) > 3 and bits[2] == "tree":
            return self._json(200, [self.server.entry(repo, r, p) for r, p in files.items()], "hf", repo, "GET")
        self._json(404, {"error": "not found"}, "hf", repo, "GET")

    def _modelscope(self, method: str, rest: str, query: dict) -> None:
        bits = rest.split("/")
        repo, tail = "/".join(bits[:2]), "/".join(bits[2:])
        if not self._known("ms", repo, method):
            return
        if tail == "revisions":
            body = {"Code": 200, "Data": {"RevisionMap": {"Branches": [{"Revision": "master"}], "Tags": []}}}
            return self._json(200, body, "ms", repo, method)
        if tail == "repo/files":
            files = [{"Name": r.rsplit("/", 1)[-1], "Path": r, "Type": "blob", "Size": p.stat().st_size,
                      "Sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "Revision": "master"}
                     for r, p in self.server.files(repo).items()]
            dirs = sorted({r.rsplit("/", 1)[0] for r in self.server.files(repo) if "/" in r})
            files += [{"Name": d, "Path": d, "Type": "tree", "Size": 0, "Sha256": ""} for d in dirs]
            return self._json(200, {"Code": 200, "Data": {"Files": files}, "Success": True}, "ms", repo, method)
        if tail == "repo":
            return self._file("ms", method, repo, query.get("FilePath", [""])[0], checked=True)
        self._json(404, {"Code": 404, "Message": "not found"}, "ms", repo, method)

    def _file(self, hub: str, method: str, repo: str, rel: str, checked: bool = False) -> None:
        if not checked and not self._known(hub, repo, method):
            return
        path = self.server.files(repo).get(rel)
        if path is None:
            return self._json(404, {"error": "Entry not found"}, hub, repo, method, {"X-Error-Code": "EntryNotFound"})
        data = path.read_bytes()
        m = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
        start = int(m.group(1)) if m else 0
        if start > len(data) or (m and start == len(data) and data):
            return self._json(416, {"error": "range"}, hub, repo, method)
        body = self._damaged(rel, data)[start:]
        self.send_response(206 if m else 200)
        if m:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{self.server.entry(repo, rel, path).get("lfs", {}).get("oid") or blob_sha1(data)}"')
        self.send_header("X-Repo-Commit", self.server.sha(repo))
        self.end_headers()
        record = self._record(hub, method, repo, rel, start, 206 if m else 200)
        if method == "GET":
            self._send_body(rel, body, record)

    def _damaged(self, rel: str, data: bytes) -> bytes:
        with self.server.lock:
            left = self.server.faults.corrupt.get(rel, 0)
            if left:
                self.server.faults.corrupt[rel] = left - 1
        return bytes([data[0] ^ 0xFF]) + data[1:] if left and data else data

    def _send_body(self, rel: str, body: bytes, record: Served) -> None:
        faults = self.server.faults
        if faults.before_body:
            faults.before_body(rel)
        limit, hold = len(body), faults.hold_after.get(rel)
        with self.server.lock:
            drop = faults.drop_after.get(rel)
            if drop and drop[1] > 0:
                drop[1] -= 1
                limit = min(limit, drop[0])
            else:
                drop = None
        if hold is not None:
            limit = min(limit, hold)
        while record.sent < limit:
            piece = body[record.sent:min(limit, record.sent + SEND)]
            self.wfile.write(piece)
            self.wfile.flush()
            record.sent += len(piece)
            if faults.chunk_delay_s:
                time.sleep(faults.chunk_delay_s)
        if hold is not None and limit < len(body):
            while not (self.server.release.is_set() or self.server.stopping.is_set()):
                time.sleep(0.05)
        if limit < len(body):  # cut the connection mid-body, as a dropped network would
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _record(self, hub, method, repo, rel, start, status) -> Served:
        s = Served(hub, method, repo, rel, start, 0, status, self.headers.get("Authorization", ""),
                   self.headers.get("Cookie", ""))
        with self.server.lock:
            self.server.served.append(s)
        return s

    def _json(self, status: int, body, hub: str, repo: str, method: str, headers: Optional[dict] = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self._record(hub, method, repo, "", 0, status)
        if method == "GET":
            self.wfile.write(raw)


@contextmanager
def fake_hub(root: Path) -> Iterator[FakeHub]:
    """A running FakeHub over `root` for the block."""
    hub = FakeHub(root)
    thread = threading.Thread(target=hub.serve_forever, name="fake-hub", daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        hub.stopping.set()
        hub.shutdown()
        hub.server_close()


def make_repo(root: Path, repo: str, files: dict[str, bytes]) -> dict[str, bytes]:
    """Write a repository's files under `root`; returns them."""
    for rel, data in files.items():
        path = root / repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files
