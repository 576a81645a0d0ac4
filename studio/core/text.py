"""Text from browsers and clients made safe to encode, store and show: lone surrogates and NUL
become U+FFFD (the replacement character), and the caller learns how many there were."""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
# A lone UTF-16 half (a browser or a JSON "\ud800" escape can send one) cannot be encoded as UTF-8,
# so anything that serialises it fails later; NUL ends C strings and breaks some viewers.
_BAD = re.compile("[\x00\ud800-\udfff]")


def clean_text(text: str) -> tuple[str, int]:
    """`text` with lone surrogates and NUL replaced by U+FFFD, and how many characters were replaced."""
    if not _BAD.search(text):
        return text, 0
    # A surrogate *pair* that arrived as two code points is one real character: join it first.
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return _BAD.subn(REPLACEMENT, joined)


def cleaned(text: str) -> str:
    """`text` with lone surrogates and NUL replaced by U+FFFD."""
    return clean_text(text)[0]


def replaced_notice(count: int, what: str = "The text") -> str:
    """What the user is told when `count` characters were replaced."""
    return (f"{what} had {count} character(s) that cannot be stored (a lone UTF-16 surrogate or NUL); "
            f"they were replaced with {REPLACEMENT}.")
