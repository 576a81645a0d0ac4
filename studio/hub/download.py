"""Model downloads the user asked for: jobs run in background threads, recorded durably, resumed after
a restart of the studio or the machine, cancellable; folders are marked complete only when verified."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, Optional

from studio.config import DownloadsConfig
from studio.errors import InputError
from studio.hub.download_errors import DownloadError
from studio.hub.download_jobs import JobRecords
from studio.hub.download_list import check_repo

log = logging.getLogger(__name__)

Source = Literal["huggingface", "modelscope"]
State = Literal["queued", "listing", "downloading", "verifying", "done", "failed", "cancelled"]
ACTIVE = ("queued", "listing", "downloading", "verifying")
SOURCES = ("huggingface", "modelscope")


@dataclass(frozen=True)
class DownloadRequest:
    """One download: which repository, from which hub, into which folder."""

    source: Source
    repo: str
    revision: str = "main"
    dest: Path = Path()
    endpoint: Optional[str] = None  # None: the config's / environment's hub address
    include: tuple[str, ...] = ()  # glob patterns of the files wanted; () means all


@dataclass(frozen=True)
class JobState:
    """A snapshot of one download job."""

    id: str
    request: DownloadRequest
    state: State = "queued"
    done_bytes: int = 0
    total_bytes: int = 0
    files_done: int = 0
    files_total: int = 0
    current_file: str = ""
    error: str = ""
    hint: str = ""
    resumed_bytes: int = 0  # bytes already on disk (verified files and partials) when this run began
    error_key: str = ""  # for the UI to word the error in the page's language
    error_values: dict = field(default_factory=dict)


def validate(req: DownloadRequest) -> DownloadRequest:
    """The request checked and normalised (absolute destination); InputError saying what to fix."""
    if req.source not in SOURCES:
        raise InputError(f"Unknown source {req.source!r}.", "Use huggingface or modelscope.")
    check_repo(req.source, req.repo)
    if not req.revision or any(c in req.revision for c in "\0\n\r") or ".." in req.revision:
        raise InputError(f"{req.revision!r} is not a revision.", "Use a branch, a tag or a commit id, e.g. main.")
    if str(req.dest) in ("", "."):
        raise InputError("No destination folder was given.", "Choose the folder the model goes into.")
    dest = Path(req.dest).expanduser().absolute()
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{dest} exists and is not a folder.", "Choose another destination.")
    return replace(req, dest=dest, include=tuple(req.include))


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
        self._stopping = threading.Event()
        for job_id, rec in self._records.load().items():
            self._states[job_id] = JobState(job_id, rec.request, rec.state, error=rec.error, hint=rec.hint,
                                            error_key=rec.error_key)

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
            if not self._running(job_id) and st.state in ACTIVE:
                self._states[job_id] = replace(st, state="cancelled")
                self._records.save(job_id, self._states[job_id], self._records.pinned(job_id))

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
        for ev in events:
            ev.set()
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


def request_dict(req: DownloadRequest) -> dict:
    """A request as JSON-friendly data."""
    data = asdict(req)
    data["dest"], data["include"] = str(req.dest), list(req.include)
    return data
