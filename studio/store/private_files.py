"""Files the studio writes for a user (thumbnails, exports): only inside 0700 folders of its own, made
without following links, so another local user can neither read them nor plant files or links there."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

from studio.errors import StudioError
from studio.store.storage_errors import os_error

EXPORT_MAX_AGE_S = 3600.0  # Gradio copies a returned file into its own cache at once; ours is then spare
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _refuse(path: Path, why: str) -> StudioError:
    return StudioError(f"Refusing to use {path}: {why}; it may have been planted by another user.",
                       f"Remove or rename {path} (check who made it), then try again; the studio makes its own.")


def _check_ours(fd: int, path: Path) -> None:
    """Refuse a folder another user owns or may write to; tighten one of ours to 0700."""
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        raise _refuse(path, f"it belongs to user id {st.st_uid}, not to this user ({os.geteuid()})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise _refuse(path, f"other users may write to it (mode {stat.S_IMODE(st.st_mode):o})")
    if st.st_mode & 0o077:
        os.fchmod(fd, 0o700)  # ours and writable by us alone, so nothing in it is foreign: just close it


def private_dir(base: Path, *parts: str) -> Path:
    """base/parts…, each part a 0700 folder of this user: made exclusively, or an existing one checked
    (never through a symbolic link, never another user's); `base` itself is trusted (the data dir)."""
    path = Path(base)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise os_error(f"open the folder {path}", path, exc) from None
    try:
        for part in parts:
            path = path / part
            child = _enter(fd, part, path)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)
    return path


def _enter(parent_fd: int, name: str, path: Path) -> int:
    """The fd of folder `name` in `parent_fd`, made or checked."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise os_error(f"create the folder {path}", path.parent, exc) from None
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise os_error(f"open the folder {path}", path.parent, exc) from None
        is_link = stat.S_ISLNK(os.lstat(name, dir_fd=parent_fd).st_mode)
        raise _refuse(path, "it is a symbolic link" if is_link else "it is not a folder") from None
    try:
        _check_ours(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_new(folder: Path, name: str, data: bytes) -> Path:
    """Write `data` to a new file `name` in `folder` (0600, never over an existing file or link)."""
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise StudioError(f"Cannot write a file named {name!r}: not a plain file name.", "Use another name.")
    path = folder / name
    try:
        dir_fd = os.open(folder, _DIR_FLAGS)
        try:
            fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except FileExistsError:
        raise _refuse(path, "a file of that name is already there") from None
    except OSError as exc:
        try:
            os.unlink(path)  # no half-written file stays behind (a full disk)
        except OSError:
            pass
        raise os_error(f"write {name}", folder, exc) from None
    return path


class PrivateFiles:
    """The studio's own folder for files shown to or downloaded by users: <data dir>/tmp/files."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "tmp" / "files"

    def folder(self, name: str) -> Path:
        """The private folder root/name, made or checked now."""
        return private_dir(self.data_dir, "tmp", "files", name)

    def export(self, filename: str, data: bytes) -> Path:
        """A download: `data` as `filename` in a fresh private folder of its own (so names never clash)."""
        exports = self.folder("exports")
        self._sweep(exports, EXPORT_MAX_AGE_S)
        try:
            fresh = Path(tempfile.mkdtemp(dir=exports))  # 0700, made exclusively with a random name
        except OSError as exc:
            raise os_error(f"export {filename}", exports, exc) from None
        return write_new(fresh, filename, data)

    def cached(self, kind: str, name: str, make) -> Path:
        """root/kind/name, written once from `make()` (bytes) and reused after: content-named files."""
        folder = self.folder(kind)
        path = folder / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise os_error(f"read {name}", folder, exc) from None
        if st is not None:
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                return path
            raise _refuse(path, "it is not a plain file of this user")
        staged = write_new(folder, f".{name}.{os.getpid()}.{time.monotonic_ns()}", make())
        try:
            os.replace(staged, path)  # atomic: a reader never sees half a file
        except OSError as exc:
            staged.unlink(missing_ok=True)
            raise os_error(f"write {name}", folder, exc) from None
        return path

    def _sweep(self, folder: Path, max_age_s: float) -> None:
        """Remove entries of `folder` older than `max_age_s`; a failure to remove one is not an error."""
        cutoff = time.time() - max_age_s
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
            except OSError:
                continue
