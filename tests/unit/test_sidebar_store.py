"""Search across conversations, date groups of the lists, and prompt presets, against real SQLite files."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from studio.core.session import ChatSession
from studio.core.types import Message
from studio.errors import InputError
from studio.store import ConversationStore, PresetStore
from studio.store.dates import date_group, grouped, short_when, zone
from studio.store.presets import MAX_PRESETS

A, B = "user-a", "user-b"
CST = 8 * 60  # UTC+8, minutes east of UTC


def conversation(*texts: str, title: str = "", updated: float = 1_000.0) -> ChatSession:
    roles = ("user", "assistant")
    session = ChatSession(title=title, messages=[Message.of(roles[i % 2], t) for i, t in enumerate(texts)])
    session.updated = updated
    return session


@pytest.fixture
def store(tmp_path):
    return ConversationStore(tmp_path / "studio.db")


@pytest.fixture
def presets(tmp_path):
    return PresetStore(tmp_path / "presets.db")


def titles(rows) -> list[str]:
    return [r.title for r in rows]


# -- search ---------------------------------------------------------------------------------------


def test_search_finds_titles_and_message_text_newest_first(store):
    store.save(A, conversation("How do I sort a list?", "Use sorted().", title="Sorting", updated=1))
    store.save(A, conversation("Tell me a story", "Once upon a time a PYTHON slept.", title="Story", updated=2))
    store.save(A, conversation("Weather", "Sunny.", title="Python weather", updated=3))
    assert titles(store.search(A, "python")) == ["Python weather", "Story"]  # title, then a reply's text
    assert titles(store.search(A, "sorted")) == ["Sorting"]  # an assistant message
    assert titles(store.search(A, "nothing like this")) == []
    assert titles(store.search(A, "  ")) == ["Python weather", "Story", "Sorting"]  # empty query: the list


def test_search_needs_every_word_and_stays_within_the_user(store):
    store.save(A, conversation("red apples", "green pears", title="Fruit"))
    store.save(B, conversation("red apples and green pears", title="Other user"))
    assert titles(store.search(A, "red green")) == ["Fruit"]  # words from two messages
    assert titles(store.search(A, "red blue")) == []
    assert titles(store.search(B, "Fruit")) == []


def test_search_chinese_text(store):
    store.save(A, conversation("请写一个 300 字的小故事", "从前有一只小猫。", title="小故事"))
    store.save(A, conversation("用 Python 写快速排序", "def quicksort(xs): ...", updated=5))
    assert titles(store.search(A, "小猫")) == ["小故事"]
    assert [r.title for r in store.search(A, "快速排序")] == ["用 Python 写快速排序"]
    assert titles(store.search(A, "大狗")) == []


@pytest.mark.parametrize("query, hits", [
    ("100%", ["Percent"]), ("%", ["Percent"]), ("a_b", ["Underscore"]), ("_", ["Underscore"]),
    ("\\", ["Backslash"]), ("'; DROP TABLE conversations; --", []), ('"content"', []), ("role", []),
])
def test_search_takes_wildcards_quotes_and_json_keys_literally(store, query, hits):
    store.save(A, conversation("growth of 100% this year", title="Percent", updated=1))
    store.save(A, conversation("the name a_b is a variable", title="Underscore", updated=2))
    store.save(A, conversation("a path C:\\temp", title="Backslash", updated=3))
    store.save(A, conversation("plain words only", title="Plain", updated=4))
    assert titles(store.search(A, query)) == hits
    assert store.count(A) == 4


def test_search_skips_a_damaged_row_instead_of_failing(store):
    store.save(A, conversation("findable text", title="Good"))
    store.save(A, conversation("damaged", title="Bad"))
    with sqlite3.connect(store.db_path) as conn:
        conn.execute("UPDATE conversations SET data = '{not json' WHERE title = 'Bad'")
    assert titles(store.search(A, "findable")) == ["Good"]
    assert titles(store.search(A, "Bad")) == ["Bad"]  # the title column is still searchable


# -- date groups ----------------------------------------------------------------------------------


def at(*args, minutes: int = CST) -> float:
    """The timestamp of a wall-clock time in the zone `minutes` east of UTC."""
    return datetime(*args, tzinfo=timezone(timedelta(minutes=minutes))).timestamp()


NOW = at(2026, 12, 1, 9, 30)  # Tuesday 1 December 2026, 09:30 in UTC+8


@pytest.mark.parametrize("when, group", [
    (at(2026, 12, 1, 0, 0), "today"), (at(2026, 12, 1, 23, 59), "today"),  # later today: a clock ahead
    (at(2026, 11, 30, 23, 59), "yesterday"), (at(2026, 11, 30, 0, 0), "yesterday"),
    (at(2026, 11, 29, 23, 59), "week"), (at(2026, 11, 24, 0, 0), "week"),
    (at(2026, 11, 23, 23, 59), "month"), (at(2026, 11, 1, 0, 0), "month"),
    (at(2026, 10, 31, 23, 59), "older"), (at(2020, 1, 1), "older"),
])
def test_date_group_boundaries(when, group):
    assert date_group(when, NOW, CST) == group


def test_the_browser_zone_decides_the_day():
    late = at(2026, 11, 30, 23, 30, minutes=0)  # 23:30 UTC is 07:30 on 1 December in UTC+8
    now = at(2026, 12, 1, 8, 0, minutes=0)
    assert date_group(late, now, 0) == "yesterday"
    assert date_group(late, now, CST) == "today"
    assert short_when(late, now, CST) == "07:30"


def test_short_when_and_absurd_zones():
    assert short_when(at(2026, 12, 1, 7, 5), NOW, CST) == "07:05"
    assert short_when(at(2026, 11, 30, 22, 0), NOW, CST) == "22:00"
    assert short_when(at(2026, 11, 2, 12, 0), NOW, CST) == "11-02"
    assert short_when(at(2025, 11, 2, 12, 0), NOW, CST) == "2025-11-02"
    assert zone(CST) == timezone(timedelta(hours=8))
    assert zone(None) is None and zone("x") is None and zone(10_000) is None and zone(float("nan")) is None


def test_grouped_keeps_order_and_leaves_out_empty_groups(store):
    for i, when in enumerate([NOW - 60, at(2026, 11, 30, 12), NOW - 120, at(2026, 1, 1)]):
        store.save(A, conversation(f"message {i}", title=f"c{i}", updated=when))
    groups = grouped(store.list(A), NOW, CST)
    assert [(g, titles(rows)) for g, rows in groups] == [("today", ["c0", "c2"]), ("yesterday", ["c1"]),
                                                         ("older", ["c3"])]


# -- prompt presets -------------------------------------------------------------------------------


def test_presets_save_list_replace_delete(presets):
    first = presets.save_named(A, "  Pirate\nvoice ", "Talk like a pirate.")
    assert first.title == "Pirate voice"
    presets.save_named(A, "中英互译", "把中文翻译成英文，把英文翻译成中文。")
    assert {(p.title, p.text) for p in presets.list(A)} == {("Pirate voice", "Talk like a pirate."),
                                                            ("中英互译", "把中文翻译成英文，把英文翻译成中文。")}
    again = presets.save_named(A, "Pirate voice", "Arr, short answers only.")  # the same name: replaced
    assert again.id == first.id and len(presets.list(A)) == 2
    assert presets.load(A, first.id).text == "Arr, short answers only."
    assert presets.list(B) == []
    assert presets.delete(B, first.id) is False  # another user's id
    assert presets.delete(A, first.id) is True
    assert titles(presets.list(A)) == ["中英互译"]


def test_presets_refuse_empty_names_and_text(presets):
    with pytest.raises(InputError, match="needs a name"):
        presets.save_named(A, " \n ", "text")
    with pytest.raises(InputError, match="empty"):
        presets.save_named(A, "Name", "   ")
    assert presets.list(A) == []


def test_presets_have_a_limit_per_user(presets):
    for i in range(MAX_PRESETS):
        presets.save(A, presets.MODEL(title=f"p{i}", text="x"))
    with pytest.raises(InputError, match="Delete one"):
        presets.save_named(A, "one more", "text")
    presets.save_named(A, "p3", "replacing one is still fine")
    assert presets.count(A) == MAX_PRESETS
