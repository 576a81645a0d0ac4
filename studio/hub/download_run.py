"""One download job from start to end, on its own thread: list, check space, fetch, verify, mark complete."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from studio.errors import InputError
from studio.hub.download_errors import (
    HUB_NAMES,
    Cancelled,
    DownloadError,
    cannot_write,
    disk_full,
)
from studio.hub.download_fetch import FetchContext, fetch_file, part_size
from studio.hub.download_folder import (
    PARTIAL_DIR,
    file_matches,
    read_record,
    write_record,
)
from studio.hub.download_list import Listing, RemoteFile, list_files
from studio.hub.download_settings import endpoint_for, token_for

log = logging.getLogger(__name__)


def run_job(downloads, job_id: str, req, cancel: threading.Event) -> None:
    """The body of a job's thread; every outcome ends in a recorded state (or, when stopping, none)."""
    try:
        _run(downloads, job_id, req, cancel)
    except Cancelled:
        if downloads.stopping:  # the studio is closing: leave it "running", the next start resumes it
            return
        downloads.update(job_id, True, state="cancelled", current_file="")
    except (DownloadError, InputError) as exc:
        downloads.fail(job_id, exc)
    except OSError as exc:
        downloads.fail(job_id, disk_full(str(req.dest), 1, 0) if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                       else cannot_write(str(exc.filename or req.dest), exc.strerror or str(exc)))
    except Exception as exc:  # never a silent dead thread: the job says what happened
        log.exception("Download %s failed", job_id)
        downloads.fail(job_id, DownloadError(f"The download stopped on an internal error: {exc!r}.",
                                             "See the log; starting it again resumes where it stopped."))


def _run(downloads, job_id: str, req, cancel: threading.Event) -> None:
    cfg = downloads.config
    endpoint = endpoint_for(cfg, req.source, req.endpoint)
    token = token_for(cfg, req.source)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    cookies = httpx.Cookies()
    if token and req.source == "modelscope":  # ModelScope's own client sends the token as this session cookie
        cookies.set("m_session_id", token, domain=urlsplit(endpoint).hostname or "")
    # httpx drops Authorization on a redirect to another host (a CDN), and the cookie only goes to the hub's.
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(httpx.Client(timeout=httpx.Timeout(cfg.timeout_s), follow_redirects=True,
                                                  cookies=cookies, headers={"User-Agent": "puyu-studio"}))
        downloads.update(job_id, True, state="listing", error="", hint="", error_key="")
        listing = _listing(client, downloads, job_id, req, endpoint, headers, cancel)
        if cancel.is_set():
            raise Cancelled()
        _mkdir(req.dest)
        stack.enter_context(_folder_lock(req.dest))
        files, record, todo = _plan(downloads, job_id, req, listing, cancel)
        ctx = FetchContext(client, req.source, endpoint, req.repo, listing.revision, headers, cancel, cfg.retries,
                           cfg.retry_wait_s, lambda n: downloads.add_bytes(job_id, n),
                           lambda rel: downloads.update(job_id, state="verifying", current_file=rel))
        downloads.set_abort(job_id, ctx.abort)
        try:
            _fetch_all(downloads, job_id, ctx, req.dest, record, todo)
        finally:
            downloads.set_abort(job_id, None)
        downloads.update(job_id, True, state="verifying", current_file="")
        _finish(req.dest, record, files)
    downloads.update(job_id, True, state="done", done_bytes=sum(f.size for f in files), current_file="")


def _plan(downloads, job_id: str, req, listing: Listing,
          cancel: threading.Event) -> tuple[list[RemoteFile], dict, list[RemoteFile]]:
    """The files wanted, the folder's record, and what is left to fetch after the space check."""
    dest = req.dest
    files = [f for f in listing.files if _wanted(f.path, req.include)]
    record = _prepare_record(dest, req, listing, files, cancel)
    todo = [f for f in files if f.path not in record["files"]]
    on_disk = sum(f.size for f in files if f.path in record["files"]) + sum(part_size(dest, f) for f in todo)
    downloads.update(job_id, True, pinned=listing.revision, state="downloading", total_bytes=sum(f.size for f in files),
                     files_total=len(files), files_done=len(files) - len(todo), done_bytes=on_disk,
                     resumed_bytes=on_disk)
    _check_space(dest, sum(f.size - part_size(dest, f) for f in todo))
    return files, record, todo


def _fetch_all(downloads, job_id: str, ctx: FetchContext, dest: Path, record: dict, todo: list[RemoteFile]) -> None:
    """Fetch and verify each file in turn, recording each one in the folder as soon as it is in place."""
    for f in todo:
        downloads.update(job_id, state="downloading", current_file=f.path)
        digest = fetch_file(ctx, f, dest)
        st = (dest / f.path).stat()
        record["files"][f.path] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "hash": digest}
        write_record(dest, record)
        downloads.update(job_id, files_done=downloads.state(job_id).files_done + 1)


def _listing(client, downloads, job_id, req, endpoint, headers, cancel) -> Listing:
    """The file list, at the commit pinned by this job's first run; busy hubs and drops are retried."""
    revision = downloads.pinned(job_id) or req.revision
    cfg = downloads.config
    for attempt in range(cfg.retries + 1):
        try:
            return list_files(client, req.source, endpoint, req.repo, revision, headers)
        except DownloadError as exc:
            if not exc.retry or attempt == cfg.retries:
                raise
        if cancel.wait(min(cfg.retry_wait_s * 2 ** attempt, 30.0)):
            raise Cancelled()
    raise AssertionError("unreachable")


def _wanted(path: str, include: tuple[str, ...]) -> bool:
    return not include or any(fnmatch.fnmatch(path, pat) for pat in include)


def _mkdir(dest: Path) -> None:
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(str(dest), 1, 0) from None
        raise cannot_write(str(dest), exc.strerror or str(exc)) from None


def _prepare_record(dest: Path, req, listing: Listing, files: list[RemoteFile], cancel: threading.Event) -> dict:
    """The folder's record for this listing, keeping the files verified before that are still intact."""
    old = read_record(dest)
    same = old.get("source") == req.source and old.get("repo") == req.repo
    if old and not same and old.get("state") == "complete":
        hub = HUB_NAMES.get(str(old.get("source")), old.get("source"))
        raise InputError(f"{dest} already holds {old.get('repo')} from {hub}.", "Choose another destination folder (--dest).")
    wanted = {f.path: f for f in files}
    kept = {}
    for rel, entry in (old.get("files", {}) if same else {}).items():
        f = wanted.get(rel)
        if f and entry.get("hash") == (f.sha256 or f.git_sha1 or entry.get("hash")) and file_matches(dest, rel, entry):
            kept[rel] = entry
    record = {"state": "partial", "source": req.source, "repo": req.repo, "revision": listing.revision,
              "listing": {f.path: f.size for f in files}, "files": kept}
    _adopt_present(dest, record, files, cancel)
    write_record(dest, record)
    return record


def _adopt_present(dest: Path, record: dict, files: list[RemoteFile], cancel: threading.Event) -> None:
    """Files already in place (another tool's download) are kept when their size and hash match."""
    from studio.hub.download_fetch import file_hash

    for f in files:
        path = dest / f.path
        if f.path in record["files"] or not path.is_file() or path.stat().st_size != f.size or not f.hash_kind:
            continue
        digest = file_hash(path, f, cancel)
        if digest == (f.sha256 or f.git_sha1):
            st = path.stat()
            record["files"][f.path] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "hash": digest}


@contextlib.contextmanager
def _folder_lock(dest: Path) -> Iterator[None]:
    """Hold the folder's download lock: the studio and a terminal never write the same partial files."""
    lock_dir = dest / PARTIAL_DIR
    lock_dir.mkdir(exist_ok=True)
    fd = os.open(lock_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{dest} is being downloaded by another studio or terminal right now.",
                             "Let that download finish (or cancel it) first; it resumes from the same bytes.") from None
        yield
    finally:
        os.close(fd)


def _check_space(dest: Path, needed: int) -> None:
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise disk_full(str(dest), needed, free)


def _finish(dest: Path, record: dict, files: list[RemoteFile]) -> None:
    """Mark the folder complete, last, once every file is verified and still in place."""
    missing = [f.path for f in files if not file_matches(dest, f.path, record["files"].get(f.path, {}))]
    if missing:
        raise DownloadError(f"{missing[0]} changed on disk while the download ran.",
                            "Start the download again: it fetches what is missing.")
    record["state"] = "complete"
    write_record(dest, record)
    shutil.rmtree(dest / PARTIAL_DIR, ignore_errors=True)
