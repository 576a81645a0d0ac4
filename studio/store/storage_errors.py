"""What a failed read or write of the data dir means for a user: the folder, the cause and the fix."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Optional

from studio.errors import StudioError

# Below this much free space a failed write is taken to be a full disk (the error itself may only say "I/O").
LOW_SPACE_BYTES = 1024 * 1024
UNCHANGED = "Nothing was changed; the studio keeps serving what it can."

# cause → (what happened, said of {folder}; what to do about it)
CAUSES = {
    "full": ("the disk holding {folder} is full",
             "Free some space on that disk, then try again."),
    "quota": ("the disk quota for {folder} is used up",
              "Free some of your space there (or ask for a larger quota), then try again."),
    "read-only": ("{folder} is on a read-only file system",
                  "Remount it read-write, or restart the studio with --data-dir on a writable disk."),
    "permission": ("this user may not write to {folder}",
                   "Give this user write access to it (chown / chmod), or restart the studio with another --data-dir."),
    "locked": ("another program holds the lock on the store in {folder}",
               "Close the other program using it (another studio on the same --data-dir?), then try again."),
}
_ERRNO_CAUSES = {
    errno.ENOSPC: "full",
    errno.EDQUOT: "quota",
    errno.EROFS: "read-only",
    errno.EACCES: "permission",
    errno.EPERM: "permission",
}


def cause_of_errno(exc: OSError) -> Optional[str]:
    """The cause an OSError's errno names, or None when it names none of the known ones."""
    return _ERRNO_CAUSES.get(exc.errno or 0)


def probe(folder: Path, file: Optional[Path] = None) -> Optional[str]:
    """Why `folder` (or `file` in it) cannot take a write now, asked of the file system; None: no reason seen."""
    path = Path(folder)
    while not path.is_dir() and path != path.parent:
        if path.exists():
            return None  # a file stands where a folder should be: no disk condition explains that
        path = path.parent  # the nearest folder that exists is the one that refused to hold a new one
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return "read-only"
    if st.f_bavail * st.f_frsize < LOW_SPACE_BYTES:
        return "full"
    if not os.access(path, os.W_OK | os.X_OK) or (file is not None and file.exists() and not os.access(file, os.W_OK)):
        return "permission"
    return None


def storage_error(action: str, folder: Path, cause: Optional[str], detail: str) -> StudioError:
    """The StudioError for a failed `action` ("save the conversation") in `folder` for `cause`."""
    if cause not in CAUSES:
        return StudioError(f"Could not {action} ({detail}; folder {folder}).",
                           f"Check that {folder} exists, is writable and has free space, then try again. {UNCHANGED}")
    what, fix = CAUSES[cause]
    return StudioError(f"Could not {action}: {what.format(folder=folder)} ({detail}).", f"{fix} {UNCHANGED}")


def os_error(action: str, folder: Path, exc: OSError) -> StudioError:
    """The StudioError for an OSError raised while doing `action` in `folder`."""
    return storage_error(action, folder, cause_of_errno(exc) or probe(folder), exc.strerror or str(exc))
