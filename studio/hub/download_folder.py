"""A download folder's own record: which files are verified, and the mark that it is complete.

`<dest>/.puyu-download.json` is rewritten atomically after each verified file ("partial") and once more,
last, when every file is verified ("complete"); bytes still arriving live under `<dest>/.puyu-partial/`.
The model finder offers a folder only when is_complete() says so."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

MARKER = ".puyu-download.json"
PARTIAL_DIR = ".puyu-partial"
PART_SUFFIX = ".part"


@dataclass(frozen=True)
class FolderProgress:
    """How far a download folder has got, from its record and partial files (no network)."""

    state: str  # "complete" | "partial"
    source: str
    repo: str
    revision: str
    files_done: int
    files_total: int
    done_bytes: int  # verified files plus the bytes of partial files
    total_bytes: int


def part_path(dest: Path, rel: str) -> Path:
    """Where the bytes of `rel` collect until it is verified."""
    return dest / PARTIAL_DIR / (rel + PART_SUFFIX)


def read_record(dest: Path) -> dict:
    """The folder's record, or {} when there is none (or it is unreadable: then nothing is trusted)."""
    try:
        data = json.loads((Path(dest) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else {}


def write_record(dest: Path, record: dict) -> None:
    """Replace the record atomically (a crash leaves the old one or the new one, never half)."""
    write_json_atomic(Path(dest) / MARKER, record)


def write_json_atomic(path: Path, data: dict, mode: int = 0o644) -> None:
    """Write `data` as JSON to `path` through a synced temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def file_matches(dest: Path, rel: str, entry: dict) -> bool:
    """Whether `rel` is on disk as it was when verified (same size and modification time)."""
    try:
        st = (Path(dest) / rel).stat()
    except OSError:
        return False
    return st.st_size == entry.get("size") and st.st_mtime_ns == entry.get("mtime_ns")


def is_complete(folder: Path) -> bool:
    """True only for a folder whose download finished and whose verified files are all still there."""
    record = read_record(Path(folder))
    if record.get("state") != "complete" or not record["files"]:
        return False
    return all(file_matches(Path(folder), rel, entry) for rel, entry in record["files"].items())


def partial_state(folder: Path) -> Optional[FolderProgress]:
    """The progress of a download folder, or None when the folder was not made by a download."""
    folder = Path(folder)
    record = read_record(folder)
    if not record:
        return None
    listed = record.get("listing") or {}
    verified = {rel: e for rel, e in record["files"].items() if file_matches(folder, rel, e)}
    done = sum(e["size"] for e in verified.values())
    for rel in listed:
        if rel not in verified:
            try:
                done += part_path(folder, rel).stat().st_size
            except OSError:
                pass
    complete = record.get("state") == "complete" and len(verified) == len(record["files"]) > 0
    return FolderProgress("complete" if complete else "partial", record.get("source", ""), record.get("repo", ""),
                          record.get("revision", ""), len(verified), max(len(listed), len(verified)), done,
                          sum(listed.values()) if listed else done)
