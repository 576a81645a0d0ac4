"""The sidebar: brand, conversations (search, new, per item open, rename, delete) and shell settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

import gradio as gr

from studio.errors import InputError, StudioError
from studio.services import Services
from studio.store.dates import zone
from studio.tasks import chat as chat_task
from studio.ui import prompt_presets, sidebar_list
from studio.ui.chat_tab import ChatTab, hint_after, resolve_prompt
from studio.ui.convert import conversation_choices, user_of
from studio.ui.errors import user_errors
from studio.ui.i18n import page_lang
from studio.ui.icons import icon
from studio.ui.sidebar_list import LIST_LIMIT, Entry, ItemParts
from studio.ui.users import web_user

TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")

# Runs in the browser before /resume: the per-browser key that keeps a user's conversations, the conversation
# open before the reload, and the browser's time zone (minutes east of UTC) for the date groups.
READ_TOKEN_JS = """(t, c, z) => [localStorage.getItem('puyu-user') || '', localStorage.getItem('puyu-conv') || '',
  String(-new Date().getTimezoneOffset())]"""
STORE_TOKEN_JS = "(t) => { if (t) localStorage.setItem('puyu-user', t); }"
REMEMBER_JS = "(c) => { localStorage.setItem('puyu-conv', c || ''); }"
THEME_JS = """() => {
  const dark = !document.body.classList.contains('dark');
  document.body.classList.toggle('dark', dark);
  localStorage.setItem('puyu-theme', dark ? 'dark' : 'light');
}"""
CONFIRM_JS = sidebar_list.confirm_js("Delete this conversation? This cannot be undone.",
                                     "确定删除这个对话吗？删除后无法恢复。")
LANG_JS = """() => {
  const now = (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en';
  localStorage.setItem('puyu-lang', now === 'zh' ? 'en' : 'zh');
  location.reload();
}"""
# Gradio's Sidebar has no breakpoint of its own: on a phone-sized window it would cover the page.
NARROW_JS = """() => {
  if (window.innerWidth >= 768) return;
  const close = (tries) => {
    const bar = document.querySelector('#sidebar');
    const button = bar && bar.querySelector('.toggle-button');
    if (button && bar.classList.contains('open')) button.click();
    else if (!button && tries > 0) setTimeout(() => close(tries - 1), 100);
  };
  close(50);
}"""


@dataclass
class Sidebar:
    """Sidebar components other parts of the app update. The hidden radio, rename box and delete button
    carry the public API (/select, /rename, /delete); people use the rendered list."""

    conversations: gr.Radio
    token: gr.Textbox
    confirm: gr.Checkbox
    new: gr.Button
    rename_box: gr.Textbox
    delete: gr.Button
    extra: Any = None  # what `extra(t, tz)` built (the article drafts section)
    search: Optional[gr.Textbox] = None
    listing: Optional[gr.State] = None  # what the rendered list shows (sidebar_list.listing)
    remembered: Optional[gr.Textbox] = None  # the conversation open before a reload (from localStorage)
    open_id: Optional[gr.Textbox] = None  # the open conversation's id, for localStorage
    tz: Optional[gr.Textbox] = None  # the browser's zone, minutes east of UTC
    wire_item: Optional[Callable[[ItemParts], None]] = None  # set by wire(): each rendered item's events


def build(t, title: str, logo_url: str, extra: Optional[Callable] = None) -> Sidebar:
    """Lay out the sidebar inside the current Blocks context; `extra(t, tz)` adds a section (article drafts)."""
    with gr.Sidebar(open=True, width=280, elem_id="sidebar"):
        gr.Markdown(f"<div class='brand'><img src='{logo_url}' alt=''/> {title}</div>")
        new = gr.Button(t("new_chat"), variant="primary", elem_id="new-chat", icon=icon("plus"))
        search = gr.Textbox(placeholder=t("search_placeholder"), show_label=False, elem_id="conv-search",
                            max_length=200, lines=1, container=False)
        listing = gr.State(sidebar_list.pending())
        tz = gr.Textbox("", visible=False)  # minutes east of UTC, as text: API callers may leave it out
        bar = Sidebar(conversations=gr.Radio([], visible=False), token=gr.Textbox(visible=False),
                      confirm=gr.Checkbox(False, visible=False), new=new,
                      rename_box=gr.Textbox(visible=False, max_length=200), delete=gr.Button(visible=False),
                      search=search, listing=listing, remembered=gr.Textbox("", visible=False),
                      open_id=gr.Textbox("", visible=False), tz=tz)
        gr.Markdown(t("conversations"), elem_classes=["list-heading"])
        with gr.Column(elem_id="conversations", elem_classes=["side-list"]):
            # Drawn when the listing changes only: a redraw closes an item's open menu.
            @gr.render(inputs=[listing, tz], triggers=[listing.change])
            def _draw(state, zone):
                empty = "no_matches" if (state or {}).get("query") else "no_conversations"
                sidebar_list.draw(t, "conv", state, zone, empty, bar.wire_item)
        bar.extra = extra(t, tz) if extra is not None else None
        with gr.Row():
            theme = gr.Button(t("theme"), size="sm", elem_id="theme-toggle", icon=icon("theme"))
            lang = gr.Button(t("language"), size="sm", elem_id="lang-toggle")
    theme.click(None, js=THEME_JS, api_visibility="private")
    lang.click(None, js=LANG_JS, api_visibility="private")
    return bar


class _Handlers:
    """The sidebar's event handlers: each shows a conversation in the chat tab and the list beside it."""

    def __init__(self, services: Services, bar: Sidebar, chat: ChatTab, user_id: gr.State) -> None:
        self.services, self.store, self.bar, self.chat, self.user_id = services, services.store, bar, chat, user_id

    def _listing(self, uid: str, current: str, state: Optional[dict]) -> dict:
        """The hidden radio (the API's view), the rendered list's state and the open id, for `current`."""
        query = (state or {}).get("query", "")
        rows = self.store.search(uid, query, LIST_LIMIT)
        choices = conversation_choices(rows, "…")
        value = current if any(c[1] == current for c in choices) else None
        entries = [Entry(r.id, r.title, r.updated) for r in rows]
        return {self.bar.conversations: gr.Radio(choices=choices, value=value),
                self.bar.listing: sidebar_list.listing(entries, current, query=query),
                self.bar.open_id: current}

    def _show(self, uid: str, sess, state: Optional[dict], request=None) -> dict:
        resolve_prompt(self.services, sess)  # a stored prompt may still wait for the model's default
        return {**self._listing(uid, sess.id if sess.messages else "", state),
                **self.chat.session_values(sess, page_lang(request))}

    def _latest(self, uid: str):
        summaries = self.store.list(uid, 1)
        return self.store.load(uid, summaries[0].id) if summaries else chat_task.new_session(self.services,
                                                                                             self.chat.engine)

    def _reopen(self, uid: str, conv_id: str):
        """The conversation open before the reload if it is still there and readable, else the newest."""
        if TOKEN_RE.match(conv_id or "") and self.store.exists(uid, conv_id):
            try:
                return self.store.load(uid, conv_id)
            except StudioError:
                pass  # a damaged row: open the newest instead; opening it from the list says what is wrong
        return self._latest(uid)

    @user_errors
    def resume(self, token: str, conversation: str, tz, request: gr.Request):
        username = getattr(request, "username", None) if request else None
        uid = web_user(self.services, token, request)
        shown = self._show(uid, self._reopen(uid, conversation), None, request)
        return {self.user_id: uid, self.bar.token: "" if username else uid, **shown,
                self.bar.tz: str(int(tz)) if zone(tz) is not None else ""}

    @user_errors
    def select(self, conv_id: str, uid: str, state, request: gr.Request):
        uid = user_of(uid, request)
        return self._show(uid, self.store.load(uid, conv_id), state, request)

    @user_errors
    def new(self, uid: str, state, request: gr.Request):
        return self._show(user_of(uid, request), chat_task.new_session(self.services, self.chat.engine), state,
                          request)

    @user_errors
    def search(self, query: str, uid: str, sess, state, request: gr.Request):
        query = " ".join((query or "").split())
        return self._listing(user_of(uid, request), sess.id if sess.messages else "", {**(state or {}),
                                                                                      "query": query})

    @user_errors
    def rename(self, title: str, sess, uid: str, state, request: gr.Request):
        if not sess.messages:
            raise InputError("Send a message first; empty conversations are not saved.", "",
                             key="err_empty_conversation")
        return self.rename_item(sess.id)(title, sess, uid, state, request)

    @user_errors
    def delete(self, confirmed: bool, sess, uid: str, state, request: gr.Request):
        return self.delete_item(sess.id)(confirmed, sess, uid, state, request)

    def rename_item(self, conv_id: str):
        """The handler that renames conversation `conv_id` (the open one or another in the list)."""
        @user_errors
        def rename(title: str, sess, uid: str, state, request: gr.Request):
            uid = user_of(uid, request)
            stored = self.store.rename(uid, conv_id, title)  # the cleaned, stored title
            if sess.id == conv_id:
                sess.title = stored
            return {**self._listing(uid, sess.id if sess.messages else "", state), self.chat.session: sess,
                    self.bar.rename_box: ""}

        return rename

    def delete_item(self, conv_id: str):
        """The handler that deletes conversation `conv_id` once confirmed; deleting the open one opens the newest."""
        @user_errors
        def delete(confirmed: bool, sess, uid: str, state, request: gr.Request):
            if not confirmed:
                return gr.skip()
            uid = user_of(uid, request)
            self.store.delete(uid, conv_id)
            if sess.id == conv_id:
                return self._show(uid, self._latest(uid), state, request)
            return self._listing(uid, sess.id if sess.messages else "", state)

        return delete

    def open_item(self, conv_id: str):
        """The handler that opens conversation `conv_id` from the list."""
        def open_(uid: str, state, request: gr.Request):
            return self.select(conv_id, uid, state, request)

        return open_

    def refresh(self, uid, sess, state, request: gr.Request):
        return self._listing(user_of(uid, request), sess.id if sess.messages else "", state)


def wire(demo: gr.Blocks, services: Services, bar: Sidebar, chat: ChatTab, user_id: gr.State) -> callable:
    """Attach events; returns `after_save(event)` that refreshes the list after a chat event."""
    h, session, state = _Handlers(services, bar, chat, user_id), chat.session, bar.listing
    listed = [bar.conversations, state, bar.open_id]
    outs = [bar.conversations, *chat.session_outputs(), state, bar.open_id]
    resumed = demo.load(h.resume, [bar.token, bar.remembered, bar.tz], [user_id, bar.token, *outs, bar.tz],
                        js=READ_TOKEN_JS, api_name="resume")
    resumed.then(None, [bar.token], None, js=STORE_TOKEN_JS)
    demo.load(None, js=NARROW_JS, api_visibility="private")
    shown = [resumed, bar.conversations.input(h.select, [bar.conversations, user_id, state], outs, api_name="select"),
             bar.new.click(h.new, [user_id, state], outs, api_name="new")]
    # change, not input: a paste or a browser's autofill changes the box without the key events input needs.
    bar.search.change(h.search, [bar.search, user_id, session, state], listed, api_name="search",
                     trigger_mode="always_last", show_progress="hidden")
    renamed = bar.rename_box.submit(h.rename, [bar.rename_box, session, user_id, state],
                                    [*listed, session, bar.rename_box], api_name="rename")
    shown.append(bar.delete.click(h.delete, [bar.confirm, session, user_id, state], outs, js=CONFIRM_JS,
                                  api_name="delete"))
    for event in shown:
        hint_after(services, chat, event)
        remember(event, bar)
    remember(renamed, bar)

    def wire_item(parts: ItemParts) -> None:
        """Open on a click of the title, rename on Enter in the box, delete once confirmed."""
        cid, private = parts.entry.id, dict(api_visibility="private")
        opened = parts.title.click(h.open_item(cid), [user_id, state], outs, **private)
        hint_after(services, chat, opened)
        remember(opened, bar)
        parts.rename.submit(h.rename_item(cid), [parts.rename, session, user_id, state],
                            [*listed, session, bar.rename_box], **private)
        deleted = parts.delete.click(h.delete_item(cid), [bar.confirm, session, user_id, state], outs,
                                     js=CONFIRM_JS, **private)
        hint_after(services, chat, deleted)
        remember(deleted, bar)

    bar.wire_item = wire_item
    prompt_presets.wire(services, chat, user_id)

    def after_save(event):
        remember(event.then(h.refresh, [user_id, session, state], listed, api_visibility="private"), bar)

    return after_save


def remember(event, bar: Sidebar):
    """After `event`, keep the open conversation's id in the browser so that a reload reopens it."""
    return event.then(None, [bar.open_id], None, js=REMEMBER_JS, api_visibility="private")
