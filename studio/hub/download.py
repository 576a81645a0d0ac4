"""Model downloads the user asked for: jobs run in background threads, recorded durably, resumed after
a restart of the studio or the machine, cancellable; folders are marked complete only when verified."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

from studio.config import DownloadsConfig
from studio.errors import InputError
from studio.hub.download_errors import DownloadError
from studio.hub.download_folder import FolderProgress, is_complete, partial_state
from studio.hub.download_jobs import JobRecords
from studio.hub.download_types import (
    ACTIVE,
    SOURCES,
    DownloadRequest,
    JobState,
    State,
    request_dict,
    validate,
)

__all__ = ["ACTIVE", "SOURCES", "DownloadRequest", "Downloads", "FolderProgress", "JobState", "State", "is_complete",
           "partial_state", "request_dict", "validate"]

log = logging.getLogger(__name__)


class Downloads:
    """All download jobs of one studio: start, watch, cancel, resume after a restart."""

    def __init__(self, state_dir: Path, config: DownloadsConfig, dest_root: Path) -> None:
        self._config = config
        self.dest_root = Path(dest_root)  # where a download goes when no folder is chosen
        self._records = JobRecords(Path(state_dir))
        self._lock = threading.Lock()
        self._states: dict[str, JobState] = {}
        self._cancels: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._aborts: dict[str, Callable[[], None]] = {}  # cuts a job's open connection
        self._stopping = threading.Event()
        for job_id, rec in self._records.load().items():
            fp = partial_state(rec.request.dest)  # how far it got, from the folder itself (no network)
            counts = {} if fp is None else {"done_bytes": fp.done_bytes, "total_bytes": fp.total_bytes,
                                            "files_done": fp.files_done, "files_total": fp.files_total}
            self._states[job_id] = JobState(job_id, rec.request, rec.state, error=rec.error, hint=rec.hint,
                                            error_key=rec.error_key, **counts)

    def start(self, req: DownloadRequest) -> str:
        """Begin (or continue) a download; the id of its job. The same folder never downloads twice at once."""
        req = validate(req)
        with self._lock:
            if self._stopping.is_set():
                raise InputError("The studio is stopping.", "Start the download again after it restarts.")
            for job_id, st in self._states.items():
                if st.request.dest == req.dest and self._running(job_id):
                    if st.request.repo != req.repo or st.request.source != req.source:
                        raise InputError(f"{req.dest} is already receiving {st.request.repo}.",
                                         "Wait for it or cancel it, or choose another destination.")
                    return job_id
            job_id = next((i for i, st in self._states.items() if st.request == req), None) or uuid.uuid4().hex[:12]
            self._launch(job_id, req)
        return job_id

    def _running(self, job_id: str) -> bool:
        thread = self._threads.get(job_id)
        return thread is not None and thread.is_alive()

    def running(self, job_id: str) -> bool:
        """Whether the job is being worked on in this process (an active state read back from disk is not)."""
        with self._lock:
            return self._running(job_id)

    def _launch(self, job_id: str, req: DownloadRequest) -> None:
        # Called with the lock held.
        self._states[job_id] = JobState(job_id, req, "queued")
        self._records.save(job_id, self._states[job_id], self._records.pinned(job_id))
        cancel = self._cancels[job_id] = threading.Event()
        from studio.hub.download_run import run_job

        thread = threading.Thread(target=run_job, args=(self, job_id, req, cancel), name=f"download-{job_id}",
                                  daemon=True)
        self._threads[job_id] = thread
        thread.start()

    def default_dest(self, repo: str) -> Path:
        """<dest root>/<owner>/<name> for `repo`."""
        from studio.hub.download_settings import default_dest

        return default_dest(self.dest_root, repo)

    def state(self, job_id: str) -> JobState:
        """The current snapshot of job `job_id`."""
        with self._lock:
            if job_id not in self._states:
                raise InputError(f"There is no download {job_id!r}.", "Pick one from the list of downloads.")
            return self._states[job_id]

    def jobs(self) -> list[JobState]:
        """Every job this studio knows, oldest first (finished ones too, until removed)."""
        with self._lock:
            order = self._records.order()
            return sorted(self._states.values(), key=lambda s: order.get(s.id, time.time()))

    def cancel(self, job_id: str) -> None:
        """Stop a job promptly; its partial files stay, so starting it again resumes."""
        with self._lock:
            st = self._states.get(job_id)
            if st is None:
                raise InputError(f"There is no download {job_id!r}.", "Pick one from the list of downloads.")
            if job_id in self._cancels:
                self._cancels[job_id].set()
            abort = self._aborts.get(job_id)
            if not self._running(job_id) and st.state in ACTIVE:
                self._states[job_id] = replace(st, state="cancelled")
                self._records.save(job_id, self._states[job_id], self._records.pinned(job_id))
        if abort is not None:
            abort()

    def resume_unfinished(self) -> list[str]:
        """Continue every job that was running when the studio (or the machine) stopped; their ids."""
        with self._lock:
            todo = [(i, st.request) for i, st in self._states.items() if st.state in ACTIVE and not self._running(i)]
            for job_id, req in todo:
                log.info("Resuming the download of %s into %s", req.repo, req.dest)
                self._launch(job_id, req)
        return [i for i, _ in todo]

    def wait(self, job_id: str, timeout: Optional[float] = None) -> JobState:
        """Block until the job's thread ends (or `timeout`); its state then."""
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        return self.state(job_id)

    def close(self, timeout: float = 10.0) -> None:
        """Stop every job without marking it cancelled: the next start resumes them."""
        self._stopping.set()
        with self._lock:
            events, threads = list(self._cancels.values()), list(self._threads.values())
            aborts = list(self._aborts.values())
        for ev in events:
            ev.set()
        for abort in aborts:
            abort()
        for thread in threads:
            thread.join(timeout)

    # -- called by the job's thread --------------------------------------------------------------

    @property
    def config(self) -> DownloadsConfig:
        """The downloads section of the config."""
        return self._config

    @property
    def stopping(self) -> bool:
        """Whether close() was called (a stop then is not the user's cancel)."""
        return self._stopping.is_set()

    def update(self, job_id: str, persist: bool = False, pinned: Optional[str] = None, **changes) -> JobState:
        """Change a job's snapshot; `persist` records it (state changes, not every byte)."""
        with self._lock:
            st = self._states[job_id] = replace(self._states[job_id], **changes)
            if persist:
                self._records.save(job_id, st, pinned if pinned is not None else self._records.pinned(job_id))
            return st

    def set_abort(self, job_id: str, abort: Optional[Callable[[], None]]) -> None:
        """What cancel() calls to cut the job's connection at once (None: nothing open)."""
        with self._lock:
            if abort is None:
                self._aborts.pop(job_id, None)
            else:
                self._aborts[job_id] = abort

    def add_bytes(self, job_id: str, n: int) -> None:
        """Count `n` more (or, negative, fewer) bytes done."""
        with self._lock:
            st = self._states[job_id]
            self._states[job_id] = replace(st, done_bytes=max(0, st.done_bytes + n))

    def pinned(self, job_id: str) -> str:
        """The commit the job's first listing resolved to ("" before it)."""
        return self._records.pinned(job_id)

    def fail(self, job_id: str, exc: DownloadError | InputError) -> None:
        """Record a failure with its message and hint."""
        self.update(job_id, True, state="failed", error=exc.message, hint=exc.hint, error_key=exc.key,
                    error_values=dict(exc.values), current_file="")
