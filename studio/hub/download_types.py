"""What a download is: the request (which repository, from which hub, into which folder) and a job's state."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, Optional

from studio.errors import InputError
from studio.hub.download_list import check_repo

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


def request_dict(req: DownloadRequest) -> dict:
    """A request as JSON-friendly data."""
    data = asdict(req)
    data["dest"], data["include"] = str(req.dest), list(req.include)
    return data
