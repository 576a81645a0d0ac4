"""Fetching one file: HTTP Range requests into its .part file (resuming from the bytes already there),
retries with backoff on dropped connections, size and hash verification, then an atomic rename."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

import httpx

from studio.hub.download_errors import (
    Cancelled,
    DownloadError,
    cannot_write,
    disk_full,
    dropped,
    hash_mismatch,
)
from studio.hub.download_folder import part_path
from studio.hub.download_list import (
    RemoteFile,
    check_status,
    connection_error,
    file_url,
)

READ_BLOCK = 1 << 20
MAX_WAIT_S = 30.0
_FULL = (errno.ENOSPC, errno.EDQUOT)


class _Transient(Exception):
    """A failure another attempt may get past (dropped connection, 5xx, a body cut short)."""


@dataclass
class FetchContext:
    """What fetching needs from the job: the client, where from, and how to report and stop."""

    client: httpx.Client
    source: str
    endpoint: str
    repo: str
    revision: str
    headers: dict
    cancel: threading.Event
    retries: int
    retry_wait_s: float
    on_bytes: Callable[[int], None]
    on_verify: Callable[[str], None]
    _sock: object = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, resp: Optional[httpx.Response]) -> None:
        """Remember (or, with None, forget) the socket of the response being read, for abort()."""
        stream = resp.extensions.get("network_stream") if resp is not None else None
        with self._lock:
            self._sock = stream.get_extra_info("socket") if stream is not None else None

    def abort(self) -> None:
        """Cut the connection being read: a read blocked on a stalled hub returns at once (a cancel is prompt)."""
        with self._lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def wait(self, attempt: int) -> None:
        """Back off before attempt `attempt` + 1; a cancel ends the wait at once."""
        if self.cancel.wait(min(self.retry_wait_s * 2 ** (attempt - 1), MAX_WAIT_S)):
            raise Cancelled()


def part_size(dest: Path, f: RemoteFile) -> int:
    """Bytes of `f` already in its partial file."""
    try:
        return part_path(dest, f.path).stat().st_size
    except OSError:
        return 0


def fetch_file(ctx: FetchContext, f: RemoteFile, dest: Path) -> str:
    """Bring `f` into `dest`, verified; returns its hash. A mismatch is fetched once more from zero."""
    part = part_path(dest, f.path)
    _mkdirs(part.parent)
    for attempt in (1, 2):
        _fetch_bytes(ctx, f, part, dest)
        ctx.on_verify(f.path)
        digest = file_hash(part, f, ctx.cancel)
        if digest == (f.sha256 or f.git_sha1 or digest):
            break
        part.unlink()
        ctx.on_bytes(-f.size)
    else:
        raise hash_mismatch(f.path, f.hash_kind)
    final = dest / f.path
    _mkdirs(final.parent)
    os.replace(part, final)
    return digest


def _mkdirs(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(exc, folder, 0) from None


def _write_error(exc: OSError, where: Path, needed: int) -> DownloadError:
    if exc.errno in _FULL:
        return disk_full(str(where), max(needed, 1), _free(where))
    return cannot_write(str(where), exc.strerror or str(exc))


def _free(where: Path) -> int:
    for p in (where, *where.parents):
        try:
            return shutil.disk_usage(p).free
        except OSError:
            continue
    return 0


def _fetch_bytes(ctx: FetchContext, f: RemoteFile, part: Path, dest: Path) -> None:
    """Fill `part` up to f.size, resuming from its length, retrying failures that make no progress."""
    failures, last = 0, ""
    while True:
        if ctx.cancel.is_set():
            raise Cancelled()
        have = part.stat().st_size if part.exists() else 0
        if have > f.size:  # not ours to trust: start the file again
            part.unlink()
            ctx.on_bytes(-have)
            have = 0
        if have == f.size:
            return
        try:
            _one_request(ctx, f, part, have, dest)
        except (httpx.TransportError, _Transient) as exc:
            last = str(exc) or type(exc).__name__
            if isinstance(exc, httpx.ConnectError) and failures + 1 > ctx.retries:
                raise connection_error(exc, ctx.endpoint, ctx.source) from None
        now = part.stat().st_size if part.exists() else 0
        if now == f.size:
            return
        if now > have:
            failures = 0  # progress was made: a long download survives many separate drops
            continue
        failures += 1
        if failures > ctx.retries:
            raise dropped(urlsplit(ctx.endpoint).hostname or ctx.endpoint, f.path, failures, last)
        ctx.wait(failures)


def _one_request(ctx: FetchContext, f: RemoteFile, part: Path, have: int, dest: Path) -> None:
    """One GET from byte `have` on, appended to `part`."""
    url, params = file_url(ctx.source, ctx.endpoint, ctx.repo, ctx.revision, f.path)
    headers = {**ctx.headers, "Accept-Encoding": "identity"}  # sizes and Range count the stored bytes
    if have:
        headers["Range"] = f"bytes={have}-"
    with ctx.client.stream("GET", url, params=params, headers=headers) as resp:
        ctx.attach(resp)
        try:
            _read_response(ctx, resp, f, part, have, dest)
        finally:
            ctx.attach(None)


def _read_response(ctx: FetchContext, resp: httpx.Response, f: RemoteFile, part: Path, have: int, dest: Path) -> None:
    """Check the answer, then append its body to `part` (from zero when the hub ignored Range)."""
    check_status(resp, ctx.source, ctx.repo, ctx.revision)
    if resp.status_code == 416:
        part.unlink()  # the hub says the partial file is not a prefix of its file: begin again
        ctx.on_bytes(-have)
        return
    if resp.status_code >= 400:
        raise _Transient(f"HTTP {resp.status_code}")
    if have and resp.status_code != 206:  # the server ignored Range: take the whole file again
        ctx.on_bytes(-have)
        have = 0
    _write_body(ctx, resp, part, have, f, dest)


def _write_body(ctx: FetchContext, resp: httpx.Response, part: Path, have: int, f: RemoteFile, dest: Path) -> None:
    written = 0
    try:
        # Unbuffered: every byte received is in the file the moment write() returns, so a kill -9 keeps it.
        with open(part, "ab" if have else "wb", buffering=0) as out:
            for piece in resp.iter_bytes():
                if ctx.cancel.is_set():
                    raise Cancelled()
                view = memoryview(piece)[: f.size - have - written]
                while view:  # a raw write may take only part of the bytes
                    n = out.write(view)
                    view = view[n:]
                    written += n
                    ctx.on_bytes(n)
                if have + written >= f.size:
                    break
    except OSError as exc:
        raise _write_error(exc, dest, f.size - have - written) from None
    if have + written < f.size:
        raise _Transient(f"the body ended after {have + written} of {f.size} bytes")


def file_hash(path: Path, f: RemoteFile, cancel: threading.Event) -> str:
    """The hash the hub publishes for `f`, computed over `path` (sha256, or the git blob sha1)."""
    if f.sha256 or not f.git_sha1:
        h = hashlib.sha256()
    else:
        h = hashlib.sha1()
        h.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as src:
        while block := src.read(READ_BLOCK):
            if cancel.is_set():
                raise Cancelled()
            h.update(block)
    return h.hexdigest()
