"""What the three article exports share: the result type, text clean-up, re-encoded images and the export
steps around a format's own rendering (article_export)."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

from PIL import Image

from studio.core.article import ArticleDraft, ArticleImage
from studio.errors import InputError
from studio.exports.filenames import export_filename
from studio.images import load_image

# Documents show a picture at most ~800 CSS px wide; 1600 keeps it sharp on a 2× screen.
DOCUMENT_MAX_SIDE = 1600
# A PNG over this is a photo or a noisy picture: JPEG says the same in a fraction of the bytes.
PNG_LIMIT_BYTES = 300 * 1024
JPEG_QUALITY = 85
_SURROGATES = re.compile("[\ud800-\udfff]")
# C0 controls other than tab/newline and DEL: invalid in XML (xlsx) and HTML, meaningless in Markdown.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class ExportResult:
    """An export's bytes, the download name, and what the user should know about it."""

    data: bytes
    filename: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class EncodedImage:
    """A picture re-encoded for embedding: bytes, their format and pixel size."""

    data: bytes
    ext: str  # "png" | "jpg"
    mime: str  # "image/png" | "image/jpeg"
    width: int
    height: int


def clean_text(text: Optional[str]) -> str:
    """`text` safe to encode anywhere: lone surrogates as U+FFFD, control characters removed, CRLF as LF."""
    text = _SURROGATES.sub("\ufffd", text or "")
    return _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def one_line(text: Optional[str], limit: int = 0) -> str:
    """Cleaned `text` with all whitespace runs as single spaces, cut to `limit` characters (0: no cut)."""
    line = " ".join(clean_text(text).split())
    return line if not limit or len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _first_instruction_line(draft: ArticleDraft) -> str:
    """The first line of the draft's instruction, cleaned."""
    return clean_text(draft.instruction).strip().split("\n", 1)[0]


def article_title(draft: ArticleDraft) -> str:
    """The title to show: the draft's title, else the first line of the instruction, else "Article"."""
    return one_line(draft.title) or one_line(_first_instruction_line(draft), 120) or "Article"


def article_filename(draft: ArticleDraft, ext: str) -> str:
    """The download name for an export of `draft`: its title (or instruction) made safe, else "article"."""
    return export_filename(one_line(draft.title) or _first_instruction_line(draft), ext, fallback="article")


def iso_date(stamp: float) -> str:
    """A POSIX time as ISO 8601 UTC to the second, or "" when it is not a usable time."""
    try:
        return datetime.fromtimestamp(float(stamp), timezone.utc).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def _fit(image: Image.Image, max_side: int) -> Image.Image:
    """`image` scaled down (never up) so its longer side is at most `max_side`."""
    if max(image.size) <= max_side:
        return image
    scaled = image.copy()
    scaled.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return scaled


def _encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def encode_image(path: str, max_side: int = DOCUMENT_MAX_SIDE) -> EncodedImage:
    """The file at `path` decoded safely, flattened to RGB, scaled to `max_side` and re-encoded; InputError if not."""
    intake = load_image(path)
    image = _fit(intake.image, max_side)
    # A JPEG source is a photo already: PNG would only grow it. Anything else tries lossless first.
    if intake.format == "JPEG":
        data, fmt = _encode(image, "JPEG"), "JPEG"
    else:
        data, fmt = _encode(image, "PNG"), "PNG"
        if len(data) > PNG_LIMIT_BYTES:
            jpeg = _encode(image, "JPEG")
            if len(jpeg) < len(data) // 2:
                data, fmt = jpeg, "JPEG"
    ext, mime = ("jpg", "image/jpeg") if fmt == "JPEG" else ("png", "image/png")
    return EncodedImage(data, ext, mime, image.width, image.height)


def _file_label(path: str) -> str:
    """The file's own name for messages (never its folder), printable and not too long."""
    name = os.path.basename((path or "").replace("\\", "/").rstrip("/")) or "no file"
    return one_line("".join(ch if ch.isprintable() else "?" for ch in name), 60)


def _missing_warning(image: ArticleImage, index: int, reason: str) -> str:
    caption = one_line(image.caption, 60)
    what = f"The image for “{caption}”" if caption else f"The image after paragraph {index + 1}"
    return f"{what} ({_file_label(image.path)}) {reason}; exported without it."


def block_images(draft: ArticleDraft, max_side: int = DOCUMENT_MAX_SIDE
                 ) -> tuple[list[Optional[EncodedImage]], tuple[str, ...]]:
    """Per block, its image re-encoded (None: no image, or not usable) and a warning for each unusable one."""
    done: dict[str, EncodedImage | str] = {}  # one decode per file, however often it is placed
    out: list[Optional[EncodedImage]] = []
    warnings: list[str] = []
    for index, block in enumerate(draft.blocks):
        image = block.image
        if image is None:
            out.append(None)
            continue
        path = image.path or ""
        if path not in done:
            # Only regular files are opened: a FIFO or device at that path would block or never end.
            if not path or not os.path.isfile(path):
                done[path] = "is missing on disk"
            else:
                try:
                    done[path] = encode_image(path, max_side)
                except InputError as exc:
                    done[path] = f"could not be read ({exc.message.rstrip('.')})"
                except (OSError, ValueError, MemoryError) as exc:  # Pillow's encoders raise these too
                    done[path] = f"could not be read ({type(exc).__name__})"
        result = done[path]
        if isinstance(result, str):
            warnings.append(_missing_warning(image, index, result))
            out.append(None)
        else:
            out.append(result)
    return out, tuple(warnings)


# A format's own part of an export: (draft, its block images) → (the file's bytes, warnings of its own).
Render = Callable[[ArticleDraft, list[Optional[EncodedImage]]], tuple[bytes, Sequence[str]]]


def article_export(draft: ArticleDraft, ext: str, render: Render, max_side: int = DOCUMENT_MAX_SIDE) -> ExportResult:
    """An article export: the pictures re-encoded to `max_side`, `render`ed, named `<title>.<ext>`;
    warnings about unusable pictures come first, then the format's own."""
    images, image_warnings = block_images(draft, max_side)
    data, warnings = render(draft, images)
    return ExportResult(data, article_filename(draft, ext), image_warnings + tuple(warnings))


def scale_to_box(width: int, height: int, box_w: int, box_h: int) -> float:
    """The factor that fits `width` × `height` inside the box, keeping its proportions (never above 1)."""
    if width <= 0 or height <= 0:
        return 1.0
    return min(1.0, box_w / width, box_h / height)
