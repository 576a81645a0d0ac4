"""Download jobs on disk: one JSON file per job under <data>/downloads/ (0700), each written atomically,
so a kill -9 at any moment leaves every job as it was last recorded."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from studio.hub.download_folder import write_json_atomic
from studio.hub.download_types import DownloadRequest, request_dict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobRecord:
    """What is kept of a job between runs (progress is recounted from the files on disk)."""

    request: object
    state: str
    error: str
    hint: str
    error_key: str
    pinned: str
    created: float


class JobRecords:
    """The folder of job files."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._pinned: dict[str, str] = {}
        self._created: dict[str, float] = {}

    def load(self) -> dict[str, JobRecord]:
        """Every readable job file; a damaged one is skipped with a warning, never fatal."""
        out = {}
        for path in sorted(self._folder.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                r = data["request"]
                req = DownloadRequest(r["source"], r["repo"], r.get("revision", "main"), Path(r["dest"]),
                                      r.get("endpoint"), tuple(r.get("include", ())))
                rec = JobRecord(req, data["state"], data.get("error", ""), data.get("hint", ""),
                                data.get("error_key", ""), data.get("pinned", ""), float(data.get("created", 0)))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("Skipping the unreadable download record %s: %s", path, exc)
                continue
            out[path.stem] = rec
            self._pinned[path.stem], self._created[path.stem] = rec.pinned, rec.created
        return out

    def save(self, job_id: str, st, pinned: str) -> None:
        """Write job `job_id`'s record (its request, state, error and pinned commit)."""
        self._pinned[job_id] = pinned
        created = self._created.setdefault(job_id, time.time())
        data = {"id": job_id, "request": request_dict(st.request), "state": st.state, "error": st.error,
                "hint": st.hint, "error_key": st.error_key, "pinned": pinned, "created": created}
        try:
            write_json_atomic(self._folder / f"{job_id}.json", data, mode=0o600)
        except OSError as exc:  # a full data disk must not kill the download thread's error report
            log.warning("Cannot record download %s: %s", job_id, exc)

    def pinned(self, job_id: str) -> str:
        """The commit recorded for the job, or ""."""
        return self._pinned.get(job_id, "")

    def order(self) -> dict[str, float]:
        """When each job was first recorded."""
        return dict(self._created)

    def remove(self, job_id: str) -> None:
        """Forget a job's record."""
        try:
            os.unlink(self._folder / f"{job_id}.json")
        except FileNotFoundError:
            pass
        self._pinned.pop(job_id, None)
        self._created.pop(job_id, None)
