"""The sidebar: brand, conversations (new, switch, rename, delete) and shell settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

import gradio as gr

from studio.core.session import new_id
from studio.errors import InputError
from studio.services import Services
from studio.tasks import chat as chat_task
from studio.ui.chat_tab import ChatTab, hint_after, resolve_prompt
from studio.ui.convert import conversation_choices, user_of
from studio.ui.errors import user_errors
from studio.ui.users import web_user

TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")

# Runs in the browser before /resume: the per-browser key that keeps a user's conversations.
READ_TOKEN_JS = "(t) => [localStorage.getItem('puyu-user') || '']"
STORE_TOKEN_JS = "(t) => { if (t) localStorage.setItem('puyu-user', t); }"
THEME_JS = """() => {
  const dark = !document.body.classList.contains('dark');
  document.body.classList.toggle('dark', dark);
  localStorage.setItem('puyu-theme', dark ? 'dark' : 'light');
}"""
CONFIRM_JS = """(c, s, u) => [confirm((navigator.language || '').toLowerCase().startsWith('zh')
  ? '确定删除这个对话吗？删除后无法恢复。' : 'Delete this conversation? This cannot be undone.'), s, u]"""
LANG_JS = """() => {
  const now = (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en';
  localStorage.setItem('puyu-lang', now === 'zh' ? 'en' : 'zh');
  location.reload();
}"""


@dataclass
class Sidebar:
    """Sidebar components other parts of the app update."""

    conversations: gr.Radio
    token: gr.Textbox
    confirm: gr.Checkbox
    new: gr.Button
    rename_box: gr.Textbox
    delete: gr.Button
    extra: Any = None  # what `extra(t)` built (the article drafts section)


def build(t, title: str, logo_url: str, extra: Optional[Callable] = None) -> Sidebar:
    """Lay out the sidebar inside the current Blocks context; `extra(t)` adds a section (article drafts)."""
    with gr.Sidebar(open=True, width=280, elem_id="sidebar"):
        gr.Markdown(f"<div class='brand'><img src='{logo_url}' alt=''/> {title}</div>")
        new = gr.Button(t("new_chat"), variant="primary", elem_id="new-chat")
        conversations = gr.Radio([], label=t("conversations"), elem_id="conversations", elem_classes=["conv-list"])
        rename_box = gr.Textbox(placeholder=t("rename_placeholder"), show_label=False, elem_id="rename-box",
                                max_length=200, submit_btn=t("rename"))
        delete = gr.Button(t("delete"), size="sm", variant="secondary", elem_id="delete-chat")
        section = extra(t) if extra is not None else None
        with gr.Row():
            theme = gr.Button(t("theme"), size="sm", elem_id="theme-toggle")
            lang = gr.Button(t("language"), size="sm", elem_id="lang-toggle")
        token = gr.Textbox(visible=False)
        confirm = gr.Checkbox(False, visible=False)
    theme.click(None, js=THEME_JS, api_visibility="private")
    lang.click(None, js=LANG_JS, api_visibility="private")
    return Sidebar(conversations, token, confirm, new, rename_box, delete, section)


class _Handlers:
    """The sidebar's event handlers: each shows a conversation in the chat tab and the list beside it."""

    def __init__(self, services: Services, bar: Sidebar, chat: ChatTab, user_id: gr.State) -> None:
        self.services, self.store, self.bar, self.chat, self.user_id = services, services.store, bar, chat, user_id

    def _listing(self, uid: str, current: str) -> gr.Radio:
        return gr.Radio(choices=conversation_choices(self.store.list(uid), "…"), value=current or None)

    def _show(self, uid: str, sess) -> dict:
        resolve_prompt(self.services, sess)  # a stored prompt may still wait for the model's default
        return {self.bar.conversations: self._listing(uid, sess.id if sess.messages else ""),
                **self.chat.session_values(sess)}

    def _latest(self, uid: str):
        summaries = self.store.list(uid)
        return self.store.load(uid, summaries[0].id) if summaries else chat_task.new_session(self.services,
                                                                                             self.chat.engine)

    @user_errors
    def resume(self, token: str, request: gr.Request):
        username = getattr(request, "username", None) if request else None
        uid = web_user(self.services, token, request)
        return {self.user_id: uid, self.bar.token: "" if username else uid, **self._show(uid, self._latest(uid))}

    @user_errors
    def select(self, conv_id: str, uid: str, request: gr.Request):
        uid = user_of(uid, request)
        return self._show(uid, self.store.load(uid, conv_id))

    @user_errors
    def new(self, uid: str, request: gr.Request):
        return self._show(user_of(uid, request), chat_task.new_session(self.services, self.chat.engine))

    @user_errors
    def rename(self, title: str, sess, uid: str, request: gr.Request):
        uid = user_of(uid, request)
        if not sess.messages:
            raise InputError("Send a message first; empty conversations are not saved.", "")
        sess.title = self.store.rename(uid, sess.id, title)  # the cleaned, stored title
        return {self.bar.conversations: self._listing(uid, sess.id), self.chat.session: sess,
                self.bar.rename_box: ""}

    @user_errors
    def delete(self, confirmed: bool, sess, uid: str, request: gr.Request):
        if not confirmed:
            return gr.skip()
        uid = user_of(uid, request)
        self.store.delete(uid, sess.id)
        return self._show(uid, self._latest(uid))

    def refresh(self, uid, sess, request: gr.Request):
        return self._listing(user_of(uid, request), sess.id if sess.messages else "")


def wire(demo: gr.Blocks, services: Services, bar: Sidebar, chat: ChatTab, user_id: gr.State) -> callable:
    """Attach events; returns `after_save(event)` that refreshes the list after a chat event."""
    h, session = _Handlers(services, bar, chat, user_id), chat.session
    outs = [bar.conversations, *chat.session_outputs()]
    resumed = demo.load(h.resume, [bar.token], [user_id, bar.token, *outs], js=READ_TOKEN_JS, api_name="resume")
    resumed.then(None, [bar.token], None, js=STORE_TOKEN_JS)
    shown = [resumed, bar.conversations.input(h.select, [bar.conversations, user_id], outs, api_name="select"),
             bar.new.click(h.new, [user_id], outs, api_name="new")]
    bar.rename_box.submit(h.rename, [bar.rename_box, session, user_id], [bar.conversations, session, bar.rename_box],
                          api_name="rename")
    shown.append(bar.delete.click(h.delete, [bar.confirm, session, user_id], outs, js=CONFIRM_JS, api_name="delete"))
    for event in shown:
        hint_after(services, chat, event)

    def after_save(event):
        event.then(h.refresh, [user_id, session], bar.conversations, api_visibility="private")

    return after_save
