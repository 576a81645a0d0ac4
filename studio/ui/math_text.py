"""Dollar signs in the transcript: `$…$` is inline math, but a price ("$5 and $10") must stay text.

Gradio hands `latex_delimiters` to KaTeX's auto-render, which pairs each `$` with the next one, so
"$5 and $10" became math. Before showing, a `$` that does not pair with its neighbour by pandoc's rule (the
opening `$` has a non-space right after it; the closing one a non-space right before it and no digit right
after it) is written as DOLLAR: an entity in its own span, which neither Gradio's Markdown nor auto-render
reads as a delimiter, and which the page turns back into `$` when a message is copied.
"""

from __future__ import annotations

import re
from typing import Optional

DOLLAR = '<span class="dollar">&#36;</span>'
# Code is shown as written: fenced blocks (to the end while one still streams) and inline code spans.
_CODE = re.compile(r"```[\s\S]*?(?:```|$)|~~~[\s\S]*?(?:~~~|$)|`[^`\n]*`")
_DISPLAY = re.compile(r"\$\$[\s\S]*?\$\$")
_SINGLE = re.compile(r"(?<![\\$])\$(?!\$)")


def protect_prices(text: str) -> str:
    """`text` with every `$` that is not part of math written as DOLLAR (code and `$$…$$` untouched)."""
    out, last = [], 0
    for m in _CODE.finditer(text):
        out += [_prose(text[last:m.start()]), m.group()]
        last = m.end()
    out.append(_prose(text[last:]))
    return "".join(out)


def _prose(text: str) -> str:
    out, last = [], 0
    for m in _DISPLAY.finditer(text):
        out += [_singles(text[last:m.start()]), m.group()]
        last = m.end()
    out.append(_singles(text[last:]))
    return "".join(out)


def _singles(text: str) -> str:
    """Keep the `$` pairs that read as math; write every other `$` as DOLLAR."""
    marks = [m.start() for m in _SINGLE.finditer(text)]
    paired: set[int] = set()
    i = 0
    while i < len(marks):
        close = _closer(text, marks, i) if _opens(text, marks[i]) else None
        if close is None:
            i += 1
            continue
        paired |= {marks[i], marks[close]}
        i = close + 1
    lone = set(marks) - paired
    return "".join(DOLLAR if k in lone else ch for k, ch in enumerate(text))


def _closer(text: str, marks: list[int], i: int) -> Optional[int]:
    """The index in `marks` of the `$` that closes the one at marks[i]: the very next `$`, in the same paragraph
    and able to close (KaTeX pairs each `$` with the next one, so math can never reach over a price)."""
    j = i + 1
    if j < len(marks) and "\n\n" not in text[marks[i]:marks[j]] and _closes(text, marks[j]):
        return j
    return None


def _opens(text: str, at: int) -> bool:
    return at + 1 < len(text) and not text[at + 1].isspace()


def _closes(text: str, at: int) -> bool:
    return not text[at - 1].isspace() and not (at + 1 < len(text) and text[at + 1].isdigit())
