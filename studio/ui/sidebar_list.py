"""One rendered sidebar list (conversations, article drafts): date groups, and per item its title, a short
time, and a menu with rename and delete."""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from typing import Callable, Optional

import gradio as gr

from studio.store.dates import grouped, short_when
from studio.ui.icons import icon

SAFE_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")  # ids go into element ids and a line of JS
LIST_LIMIT = 200  # items one list shows; search finds the rest

# The menu shows the item's rename box and delete button in place (no round trip to the server).
TOGGLE_JS = """() => {
  const item = document.getElementById('%s');
  if (!item) return;
  item.classList.toggle('editing');
  const box = item.querySelector('.item-rename textarea, .item-rename input');
  if (item.classList.contains('editing') && box) { box.focus(); box.select(); }
}"""
# Enter in the rename box closes the menu: the new title shows in the list, the box is done.
CLOSE_JS = """(...args) => { document.getElementById('%s')?.classList.remove('editing'); return args; }"""
CONFIRM_JS = """(c, ...rest) => [confirm(%s), ...rest]"""


@dataclass(frozen=True)
class Entry:
    """One item of a list, as the listing state holds it."""

    id: str
    title: str
    updated: float
    note: str = ""  # a second line, e.g. a draft's paragraphs and images


@dataclass(frozen=True)
class ItemParts:
    """What one rendered item offers to wire: the entry, its clickable title, rename box and delete button."""

    entry: Entry
    title: gr.HTML
    rename: gr.Textbox
    delete: gr.Button


def listing(entries: list[Entry], current: str, **extra) -> dict:
    """The state value a list renders from (plain data: gr.State compares it to decide on a re-render)."""
    return {"entries": [[e.id, e.title, e.updated, e.note] for e in entries], "current": current or "", **extra}


def pending() -> dict:
    """The state before the first listing: unlike any real one, so the first listing always renders."""
    return listing([], "", pending=True)


def confirm_js(question_en: str, question_zh: str) -> str:
    """A js step that asks before deleting, in the page's language; its answer replaces the first input."""
    lang = "(navigator.language || '').toLowerCase().startsWith('zh')"
    return CONFIRM_JS % f"{lang} ? {question_zh!r} : {question_en!r}"


def _title_html(entry: Entry, untitled: str, when: str, note: str) -> str:
    note = f"<span class='item-note'>{html.escape(note)}</span>" if note else ""
    return (f"<div class='item-line'><span class='item-title'>{html.escape(entry.title or untitled)}</span>"
            f"<span class='item-when'>{html.escape(when)}</span></div>{note}")


def draw(t, prefix: str, state: dict, tz, empty: str, wire: Optional[Callable[[ItemParts], None]],
         note: Callable[[Entry], str] = lambda entry: entry.note) -> None:
    """Lay out the list in `state` (from `listing`) grouped by date in the browser's zone `tz` (minutes east
    of UTC); `wire(parts)` attaches each item's events, `note(entry)` is the line under its title."""
    entries = [Entry(*row) for row in (state or {}).get("entries", []) if SAFE_ID.match(str(row[0]))]
    if not entries:
        gr.Markdown(t(empty), elem_classes=["list-empty"], key=f"{prefix}-empty")
        return
    now, current = time.time(), state.get("current", "")
    for group, rows in grouped(entries, now, tz):
        gr.Markdown(t(f"group_{group}"), elem_classes=["list-group"], key=f"{prefix}-group-{group}")
        for entry in rows:
            parts = _item(t, prefix, entry, entry.id == current, short_when(entry.updated, now, tz), note(entry))
            if wire is not None:
                wire(parts)


def _item(t, prefix: str, entry: Entry, current: bool, when: str, note: str) -> ItemParts:
    elem = f"{prefix}-{entry.id}"
    classes = ["list-item", "current"] if current else ["list-item"]
    with gr.Column(elem_id=elem, elem_classes=classes, key=elem):
        with gr.Row(elem_classes=["item-main"], equal_height=True):
            title = gr.HTML(_title_html(entry, "…", when, note), elem_classes=["item-open"], padding=False,
                            key=f"{elem}-open")
            menu = gr.Button("…", size="sm", elem_classes=["item-menu"], key=f"{elem}-menu", min_width=0)
        with gr.Row(elem_classes=["item-actions"], equal_height=True):
            rename = gr.Textbox(entry.title, show_label=False, max_length=200, lines=1, container=False,
                                interactive=True, placeholder=t("rename_placeholder"), elem_classes=["item-rename"],
                                key=f"{elem}-rename", scale=3)
            delete = gr.Button(t("delete"), size="sm", variant="stop", icon=icon("trash"),
                               elem_classes=["item-delete"], key=f"{elem}-delete", min_width=0, scale=1)
    menu.click(None, js=TOGGLE_JS % elem, api_visibility="private")
    rename.submit(None, js=CLOSE_JS % elem, api_visibility="private")
    return ItemParts(entry, title, rename, delete)
