"""Article as a zip: `article.md` plus its pictures under `images/`, referenced by relative paths.

The paragraphs keep the model's Markdown (headings, lists, emphasis, code), with one exception: a
`<` outside code is written as `&lt;`, so HTML or script in the text reads as text in any Markdown
viewer instead of becoming markup, and a picture the text pulls from the web (`![x](http://…)`) is
written as a plain link, so opening the document fetches nothing. An unclosed code fence is closed
at the end of its paragraph so it cannot swallow the pictures and paragraphs after it.
"""

from __future__ import annotations

import bisect
import re
import zipfile
from datetime import datetime, timezone
from io import BytesIO

from studio.core.article import ArticleDraft
from studio.exports.article_images import (EncodedImage, ExportResult, article_export, article_title, clean_text,
                                           iso_date, one_line)
from studio.exports.filenames import ascii_slug

MARKDOWN_NAME = "article.md"
IMAGE_FOLDER = "images"
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_TICKS = re.compile(r"`+")
_LIVE = re.compile(r"(?<!\\)(\\*)(?:(<)|!\[)")
# The characters that can start inline markup in a one-line title or caption.
_INLINE_MARKUP = re.compile(r"([\\`*_\[\]<>&~#|!])")


def escape_inline(text: str) -> str:
    """One line of text that Markdown shows literally (markup characters backslash-escaped)."""
    return _INLINE_MARKUP.sub(r"\\\1", one_line(text))


def _neutralise(text: str) -> str:
    """Every `<` not already backslash-escaped as `&lt;`, and `![` as `\\![` (a link, not a picture)."""
    def swap(m: re.Match) -> str:
        if len(m.group(1)) % 2:  # escaped already: shown literally
            return m.group(0)
        return m.group(1) + ("&lt;" if m.group(2) else "\\![")

    return _LIVE.sub(swap, text)


def _escape_outside_code_spans(chunk: str) -> str:
    """`chunk` neutralised everywhere except inside inline code spans (shown verbatim there)."""
    out: list[str] = []
    runs = list(_TICKS.finditer(chunk))
    by_length: dict[int, list[int]] = {}  # run length → indexes of the runs that long, ascending
    for index, run in enumerate(runs):
        by_length.setdefault(len(run.group()), []).append(index)
    pos = i = 0
    while i < len(runs):
        start, length = runs[i].start(), len(runs[i].group())
        slashes = 0
        while start - slashes - 1 >= pos and chunk[start - slashes - 1] == "\\":
            slashes += 1
        if slashes % 2:  # "\`": the first backtick is literal; the rest of the run may still open a span
            start, length = start + 1, length - 1
        same = by_length.get(length, [])
        later = bisect.bisect_right(same, i)
        if length == 0 or later == len(same):  # no closing run: these backticks are literal
            i += 1
            continue
        close = same[later]
        out += [_neutralise(chunk[pos:start]), chunk[start:runs[close].end()]]
        pos, i = runs[close].end(), close + 1
    out.append(_neutralise(chunk[pos:]))
    return "".join(out)


def _segments(text: str) -> list[tuple[bool, str]]:
    """`text` split into (is fenced code, lines) runs; a fence left open is closed at the end."""
    out: list[tuple[bool, str]] = []
    lines: list[str] = []
    fence = ""  # the open fence's marker, "" outside a fenced block
    for line in clean_text(text).strip("\n").split("\n"):
        match = _FENCE.match(line)
        if fence:
            lines.append(line)
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                    and not match.group(2).strip():
                out.append((True, "\n".join(lines)))
                lines, fence = [], ""
        elif match and not (match.group(1)[0] == "`" and "`" in match.group(2)):  # backtick info has none
            if lines:
                out.append((False, "\n".join(lines)))
            lines, fence = [line], match.group(1)
        else:
            lines.append(line)
    if fence:
        lines.append(fence)
    if lines:
        out.append((bool(fence), "\n".join(lines)))
    return out


def balance_fences(text: str) -> str:
    """Cleaned `text` with an unclosed code fence closed, so it cannot run into what follows."""
    return "\n".join(chunk for _, chunk in _segments(text)).strip("\n")


def markdown_paragraph(text: str) -> str:
    """A paragraph's Markdown made safe to place in a document: HTML neutralised, fences balanced."""
    parts = [chunk if code else _escape_outside_code_spans(chunk) for code, chunk in _segments(text)]
    return "\n".join(parts).strip("\n")


def _image_entry(number: int, caption: str, image: EncodedImage) -> str:
    """The archive name of one picture: `images/NN-<ascii slug>.<ext>`, unique by its number."""
    return f"{IMAGE_FOLDER}/{number:02d}-{ascii_slug(caption)}.{image.ext}"


def _byline(draft: ArticleDraft) -> str:
    """The italic line under the title: model and date, when known."""
    bits = [escape_inline(draft.model)] if one_line(draft.model) else []
    date = iso_date(draft.updated)[:10]
    if date:
        bits.append(date)
    return f"*{' · '.join(bits)}*" if bits else ""


def article_markdown_text(draft: ArticleDraft, images: list[EncodedImage | None]
                          ) -> tuple[str, list[tuple[str, bytes]]]:
    """The Markdown document and the (entry name, bytes) of each picture it references."""
    parts = [f"# {escape_inline(article_title(draft))}"]
    byline = _byline(draft)
    if byline:
        parts.append(byline)
    entries: list[tuple[str, bytes]] = []
    for index, (block, image) in enumerate(zip(draft.blocks, images)):
        paragraph = markdown_paragraph(block.text)
        if paragraph:
            parts.append(paragraph)
        if block.image is None:
            continue
        caption = escape_inline(block.image.caption)
        if image is None:
            parts.append("*(image missing)*")
        else:
            name = _image_entry(index + 1, block.image.caption, image)
            entries.append((name, image.data))
            # Entry names are ASCII slugs: nothing in them needs escaping inside ( ).
            parts.append(f"![{caption}]({name})")
        if caption:
            parts.append(f"*{caption}*")
    return "\n\n".join(parts) + "\n", entries


def article_markdown_zip(draft: ArticleDraft) -> ExportResult:
    """The article as a zip holding `article.md` and `images/NN-<slug>.png|jpg` it links to relatively."""
    return article_export(draft, "zip", _zip_bytes)


def _zip_bytes(draft: ArticleDraft, images: list[EncodedImage | None]) -> tuple[bytes, tuple[str, ...]]:
    text, entries = article_markdown_text(draft, images)
    # Entry times come from the draft, so the same draft always zips to the same bytes.
    try:
        stamp = datetime.fromtimestamp(float(draft.updated), timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        stamp = datetime(1980, 1, 1, tzinfo=timezone.utc)
    when = (min(max(stamp.year, 1980), 2107),) + stamp.timetuple()[1:6]  # the zip format's range
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, method in [(MARKDOWN_NAME, text.encode("utf-8"), zipfile.ZIP_DEFLATED)] + \
                [(name, data, zipfile.ZIP_STORED) for name, data in entries]:  # pictures are compressed
            info = zipfile.ZipInfo(name, date_time=when)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue(), ()
