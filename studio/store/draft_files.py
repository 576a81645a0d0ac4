"""Each article draft's own image folder, so a draft keeps its pictures whatever happens elsewhere."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from studio.core.article import ArticleDraft
from studio.errors import InputError, StudioError

MAX_IMAGE_BYTES = 50 * 1024 * 1024
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"})
STEM_MAX_CHARS = 40
_CHUNK = 1024 * 1024
_DRAFT_ID = re.compile(r"[0-9a-f]{1,64}")
# \w is Unicode-aware, so CJK captions survive; everything else (/, .., NUL, spaces) becomes "_".
_STEM_JUNK = re.compile(r"[^\w-]+")
_TMP_PREFIX = ".adopt-"
_USER_KEY = re.compile(r"[0-9a-f]{32}")  # what _user_key makes
# A folder this young may belong to a draft whose row is being written right now: never swept.
SWEEP_GRACE_S = 600.0

log = logging.getLogger(__name__)


def check_draft_id(draft_id: str) -> str:
    """The id unchanged if it is lowercase hex (what new_id makes); InputError otherwise."""
    if not isinstance(draft_id, str) or not _DRAFT_ID.fullmatch(draft_id):
        raise InputError(
            f"Invalid article draft id {draft_id!r}.",
            "Draft ids are lowercase hexadecimal; reload the page to start a new draft.",
        )
    return draft_id


def safe_stem(hint: str) -> str:
    """A file-name stem made from a caption or upload name: letters, digits, _ and - only."""
    stem = _STEM_JUNK.sub("_", hint or "").strip("_-")[:STEM_MAX_CHARS].strip("_-")
    return stem or "image"


def referenced_paths(draft: ArticleDraft) -> set[Path]:
    """Every file a draft points at: placed images, their candidates and the user's uploads."""
    paths = {Path(p) for p in draft.uploads}
    for image in draft.images():
        paths.add(Path(image.path))
        paths.update(Path(c.path) for c in image.candidates)
    return paths


def _user_key(user_id: str) -> str:
    """A fixed-length folder name for a user id; the raw id never reaches the file system."""
    if not isinstance(user_id, str) or not user_id:
        raise InputError("Missing user id for the article images.", "Reload the page and try again.")
    return hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class DraftFiles:
    """Image folders per (user, draft) under one root, created private (0700)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def folder(self, user_id: str, draft_id: str) -> Path:
        """The draft's image folder, created if needed."""
        path = self._path(user_id, draft_id)
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            for level in (path.parent, path):
                level.chmod(0o700)  # mkdir's mode is filtered by the umask (and skipped for parents)
        except OSError as exc:
            raise self._error("create the image folder for", exc) from exc
        return self._confined(path)

    def adopt(self, user_id: str, draft_id: str, src: Path, stem_hint: str) -> Path:
        """Copy an image into the draft's folder (same content → same file); its absolute path."""
        folder = self.folder(user_id, draft_id)
        suffix = Path(src).suffix.lower()
        suffix = suffix if suffix in IMAGE_SUFFIXES else ".img"
        try:
            tmp, digest = self._copy_in(Path(src), folder)
        except OSError as exc:
            raise self._error("copy an image into", exc) from exc
        try:
            existing = sorted(folder.glob(f"*-{digest}{suffix}"))
            if existing:
                return self._confined(existing[0])
            dest = self._confined(folder / f"{safe_stem(stem_hint)}-{digest}{suffix}")
            os.replace(tmp, dest)
            return dest
        except OSError as exc:
            raise self._error("copy an image into", exc) from exc
        finally:
            if tmp.exists():
                tmp.unlink()

    def remove(self, user_id: str, draft_id: str) -> None:
        """Delete the draft's folder and everything in it (when the draft itself is deleted)."""
        path = self._path(user_id, draft_id)
        try:
            if path.exists():
                shutil.rmtree(path)
            if path.parent.is_dir() and not any(path.parent.iterdir()):
                path.parent.rmdir()
        except OSError as exc:
            raise self._error("delete the image folder of", exc) from exc

    def copy_draft(self, old_user: str, new_user: str, draft_id: str) -> tuple[Path, Path]:
        """Copy the files of a draft's folder to the same draft's folder of `new_user` (each file whole, or
        not at all; one already there is kept); returns (old folder, new folder). The old one is left."""
        old, new = self._path(old_user, draft_id), self._path(new_user, draft_id)
        try:
            files = [e for e in _entries(old)
                     if e.is_file(follow_symlinks=False) and not e.name.startswith(_TMP_PREFIX)]
            folder = self.folder(new_user, draft_id) if files else new
            for entry in files:
                dest = folder / entry.name
                if not dest.is_file() or dest.stat().st_size != entry.stat(follow_symlinks=False).st_size:
                    _copy_whole(Path(entry.path), dest)
        except OSError as exc:
            raise self._error("copy the images of", exc) from exc
        return old, new

    def draft_ids(self, user_id: str) -> list[str]:
        """The draft ids that have an image folder of `user_id` (real folders only)."""
        return [d.name for d in _real_dirs(self.root / _user_key(user_id), _DRAFT_ID)]

    def prune(self, user_id: str, draft_id: str, keep: Iterable[Path]) -> int:
        """Delete the files in the draft's folder that `keep` no longer names; how many went."""
        path = self._path(user_id, draft_id)
        if not path.is_dir():
            return 0
        kept = {Path(p).resolve() for p in keep}
        removed = 0
        try:
            for entry in path.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    continue  # adopt never makes folders; leave anything else alone
                if entry.resolve() not in kept or entry.is_symlink():
                    entry.unlink()
                    removed += 1
        except OSError as exc:
            raise self._error("tidy the image folder of", exc) from exc
        return removed

    def sweep(self, rows: Iterable[tuple[str, str]], grace_s: float = SWEEP_GRACE_S,
              now: float | None = None) -> int:
        """Delete draft folders that no stored draft owns and untouched for `grace_s`; how many went.

        `rows` are (user id, draft id) of every stored draft. Only folders laid out as this class makes
        them (<user key>/<draft id>) are considered, and links are never followed."""
        if self.root.is_symlink():
            return 0  # a root that points elsewhere is not a layout of ours to tidy
        owned = {(_user_key(u), d) for u, d in rows}
        cutoff = (time.time() if now is None else now) - grace_s
        removed = 0
        for user_dir in _real_dirs(self.root, _USER_KEY):
            orphans = [d for d in _real_dirs(user_dir, _DRAFT_ID)
                       if (user_dir.name, d.name) not in owned and _mtime(d) < cutoff]
            for draft_dir in orphans:
                try:
                    shutil.rmtree(draft_dir)  # the fd-based rmtree unlinks links inside, never follows them
                    removed += 1
                except OSError as exc:  # tidying must never stop the studio from starting
                    log.warning("could not remove the orphan article image folder %s: %s", draft_dir, exc)
            if orphans:
                _rmdir_if_empty(user_dir)
        return removed

    # -- internals ----------------------------------------------------------------------------

    def _path(self, user_id: str, draft_id: str) -> Path:
        """The draft folder's path (not created); refused when a link anywhere below the root redirects it."""
        path = self.root.resolve() / _user_key(user_id) / check_draft_id(draft_id)
        if path.resolve() != path:
            raise _outside(self.root, path)
        return path

    def _confined(self, path: Path) -> Path:
        """`path` made absolute, or StudioError when it (or a link on the way) leaves the root."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise _outside(self.root, path)
        return resolved

    def _copy_in(self, src: Path, folder: Path) -> tuple[Path, str]:
        """Stream `src` into a temporary file in `folder`, hashing it; refuses non-files and big ones."""
        try:
            fd = os.open(src, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not hang us
        except (OSError, ValueError) as exc:  # ValueError: NUL in the path
            raise InputError(f"Cannot read the image {src}.", "Choose another file.") from exc
        info = os.fstat(fd)  # checked on the open file, so a swap after the check cannot slip past
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_IMAGE_BYTES:
            os.close(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InputError(f"{src} is not a regular file.", "Choose an image file.")
            raise InputError(_too_big(src), "Choose a smaller image.")
        with open(fd, "rb") as reader:
            digest = hashlib.sha256()
            handle, name = tempfile.mkstemp(dir=folder, prefix=_TMP_PREFIX)
            tmp = Path(name)
            try:
                with open(handle, "wb") as writer:
                    size = 0
                    while chunk := reader.read(_CHUNK):
                        size += len(chunk)
                        if size > MAX_IMAGE_BYTES:  # the file grew after fstat
                            raise InputError(_too_big(src), "Choose a smaller image.")
                        digest.update(chunk)
                        writer.write(chunk)
                os.chmod(tmp, 0o600)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return tmp, digest.hexdigest()[:20]

    def _error(self, action: str, exc: OSError) -> StudioError:
        """An OSError as a StudioError naming the root and the way out."""
        return StudioError(
            f"Could not {action} the article draft ({exc}).",
            f"Check that {self.root} is writable and the disk is not full.",
        )


def _real_dirs(parent: Path, name: re.Pattern) -> list[Path]:
    """The sub-folders of `parent` whose names match `name`: real folders only, no links."""
    try:
        with os.scandir(parent) as entries:
            return [Path(e.path) for e in entries if name.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
    except OSError:  # no root yet, or unreadable: nothing to tidy
        return []


def _entries(folder: Path) -> list[os.DirEntry]:
    """The entries of `folder`; none when it does not exist."""
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except FileNotFoundError:
        return []


def _copy_whole(src: Path, dest: Path) -> None:
    """Copy `src` to `dest` through a temporary file beside it, so `dest` is never half written."""
    handle, name = tempfile.mkstemp(dir=dest.parent, prefix=_TMP_PREFIX)
    os.close(handle)
    try:
        shutil.copyfile(src, name)
        os.chmod(name, 0o600)
        os.replace(name, dest)
    finally:
        Path(name).unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    """The folder's own modification time (of the link, were it one); +inf when it cannot be read."""
    try:
        return path.stat(follow_symlinks=False).st_mtime
    except OSError:
        return float("inf")


def _rmdir_if_empty(path: Path) -> None:
    """Remove a user's folder once its last draft folder has gone."""
    try:
        path.rmdir()
    except OSError:
        pass  # not empty (the usual case), or already gone


def _too_big(src: Path) -> str:
    """The message for an image over the size limit."""
    return f"The image {src.name} is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB."


def _outside(root: Path, path: Path) -> StudioError:
    """The error for a path that a link (or a hostile name) would take out of its folder."""
    return StudioError(
        f"Refused a path outside the article image folder {root}: {path}.",
        "Something replaced part of the folder with a link; check the data directory.",
    )
