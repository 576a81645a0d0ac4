"""Lone surrogates and NUL from clients become U+FFFD at the edges, with a count for the notice."""

from __future__ import annotations

import json

import pytest

from studio.core.text import REPLACEMENT, clean_text, replaced_notice
from studio.errors import InputError
from studio.store.sqlite_base import clean_title
from studio.tasks.article import check_instruction


@pytest.mark.parametrize("text, out, count", [
    ("plain 中文 👩‍💻", "plain 中文 👩‍💻", 0),
    ("a\ud800b", f"a{REPLACEMENT}b", 1),
    ("\udfff\ud800", REPLACEMENT * 2, 2),  # reversed halves are two lone ones
    ("nul\x00nul", f"nul{REPLACEMENT}nul", 1),
    ("\ud83d\ude00", "😀", 0),  # a pair sent as two code points is one real character
    ("\u200f\u202eRTL\u200b", "\u200f\u202eRTL\u200b", 0),  # encodable: left alone
])
def test_clean_text(text, out, count):
    assert clean_text(text) == (out, count)
    out.encode("utf-8")  # always encodable
    json.dumps(out, ensure_ascii=False).encode("utf-8")


def test_notice_names_the_count_and_the_character():
    note = replaced_notice(3, "The title")
    assert note.startswith("The title had 3 character(s)") and REPLACEMENT in note


def test_title_and_material_are_cleaned():
    assert check_instruction("Title \ud800\x00", "mat\udc00") == (f"Title {REPLACEMENT}", f"mat{REPLACEMENT}")
    with pytest.raises(InputError, match="title is empty"):
        check_instruction(None, None)


def test_rename_title_is_encodable():
    assert clean_title("a\ud800b\x00c") == f"a{REPLACEMENT}b c"


def test_chat_prompt_is_cleaned_and_wrong_types_refused():
    from types import SimpleNamespace

    from studio.tasks.chat import validate_prompt

    services = SimpleNamespace(config=SimpleNamespace(ui=SimpleNamespace(max_prompt_chars=100)))
    assert validate_prompt(services, "hi\ud800") == f"hi{REPLACEMENT}"
    with pytest.raises(InputError, match="must be text"):
        validate_prompt(services, 42)
    with pytest.raises(InputError, match="empty"):
        validate_prompt(services, None)
