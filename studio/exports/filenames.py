"""Safe names for exported files and archive entries, derived from user or model text."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

MAX_CHARS = 80
# Most file systems cap a name at 255 bytes: 240 leaves room for "-NNN" + "." + a 10-character
# extension (80 CJK characters are exactly 240 bytes; rarer four-byte characters get cut at 60).
MAX_BYTES = 240
# Windows refuses these stems whatever the extension; a downloaded "nul.md" could not be saved.
_WINDOWS_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)})
_EXT_PATTERN = re.compile(r"[A-Za-z0-9]{1,10}")
_ASCII_RUN = re.compile(r"[^a-z0-9]+")
_MAX_TRIES = 1000


def _kept(ch: str) -> bool:
    """Letters (any script, CJK included), digits, combining marks and `_` survive; nothing else does."""
    # Symbols (emoji among them), punctuation, separators, controls, surrogates and format
    # characters such as U+202E are dropped: `.`, `/`, `\` and NUL can never reach a name.
    return ch == "_" or (unicodedata.category(ch)[0] in "LNM" and ch.isprintable())


def _trim(stem: str, max_len: int) -> str:
    """`stem` cut to `max_len` characters and MAX_BYTES bytes, never between a letter and its marks."""
    cut = min(len(stem), max(max_len, 0))
    while cut > 0 and len(stem[:cut].encode("utf-8")) > MAX_BYTES:
        cut -= 1
    # A combining mark right after the cut belongs to the last kept letter: drop that letter too
    # rather than leave it without its vowel sign or accent.
    while 0 < cut < len(stem) and unicodedata.category(stem[cut])[0] == "M":
        cut -= 1
    return stem[:cut].rstrip("-")


def safe_stem(title: str, fallback: str = "article", max_len: int = MAX_CHARS) -> str:
    """A file-name stem for `title`: letters, digits, `_` and `-` only; never empty, hidden or reserved."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", title or ""):
        if _kept(ch):
            out.append(ch)
        elif out and out[-1] != "-":
            out.append("-")
    stem = _trim("".join(out).strip("-"), max_len)
    # A leading combining mark would attach to nothing: start over from the fallback then too.
    if not stem or unicodedata.category(stem[0])[0] == "M":
        stem = fallback
    if stem.upper() in _WINDOWS_RESERVED:
        stem = f"{fallback}-{stem}"
    return stem


def _checked_ext(ext: str) -> str:
    """The extension without its dot; ValueError unless it is 1–10 ASCII letters or digits."""
    ext = (ext or "").lstrip(".")
    if not _EXT_PATTERN.fullmatch(ext):
        raise ValueError(f"bad file extension {ext!r}")
    return ext


def export_filename(title: str, ext: str, fallback: str = "conversation") -> str:
    """A safe download name `<stem>.<ext>` for `title`: no path parts, never empty or hidden."""
    return f"{safe_stem(title, fallback)}.{_checked_ext(ext)}"


def export_path(folder: str | Path, title: str, ext: str, fallback: str = "article") -> Path:
    """A path inside `folder` named after `title` that no existing file holds yet (`-2`, `-3` … appended)."""
    ext = _checked_ext(ext)
    base = Path(folder).resolve()
    stem = safe_stem(title, fallback)
    for n in range(1, _MAX_TRIES + 1):
        candidate = base / (f"{stem}.{ext}" if n == 1 else f"{stem}-{n}.{ext}")
        if not candidate.exists() and not candidate.is_symlink():
            break
    else:  # a folder crowded with one title: a short digest of the title is still deterministic
        digest = hashlib.sha256((title or "").encode("utf-8", "surrogatepass")).hexdigest()[:10]
        candidate = base / f"{stem}-{digest}.{ext}"
    # The stem has no separators or dots, so this holds by construction; checked anyway because
    # the caller writes to the path.
    if candidate.resolve().parent != base:
        raise ValueError(f"export path escapes {base}")
    return candidate


def ascii_slug(text: str, fallback: str = "image", max_len: int = 40) -> str:
    """A lowercase ASCII `a-z0-9-` slug of `text` (accents folded, other scripts dropped) for archive entries."""
    folded = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode("ascii").lower()
    slug = _ASCII_RUN.sub("-", folded).strip("-")[:max_len].rstrip("-")
    return slug or fallback
