"""The sidebar: brand, conversations (new, switch, rename, delete) and shell settings."""

from __future__ import annotations

import re
from dataclasses import dataclass

import gradio as gr

from studio.core.session import new_id
from studio.errors import InputError
from studio.services import Services
from studio.tasks import chat as chat_task
from studio.ui.convert import conversation_choices, user_of
from studio.ui.errors import user_errors

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


def build(t, title: str, logo_url: str, extra=None) -> Sidebar:
    """Lay out the sidebar inside the current Blocks context; `extra()` adds sections (article drafts)."""
    with gr.Sidebar(open=True, width=280, elem_id="sidebar"):
        gr.Markdown(f"<div class='brand'><img src='{logo_url}' alt=''/> {title}</div>")
        new = gr.Button(t("new_chat"), variant="primary", elem_id="new-chat")
        conversations = gr.Radio([], label=t("conversations"), elem_id="conversations", elem_classes=["conv-list"])
        rename_box = gr.Textbox(placeholder=t("rename_placeholder"), show_label=False, elem_id="rename-box",
                                max_length=200, submit_btn=t("rename"))
        delete = gr.Button(t("delete"), size="sm", variant="secondary", elem_id="delete-chat")
        if extra is not None:
            extra()
        with gr.Row():
            theme = gr.Button(t("theme"), size="sm", elem_id="theme-toggle")
            lang = gr.Button(t("language"), size="sm", elem_id="lang-toggle")
        token = gr.Textbox(visible=False)
        confirm = gr.Checkbox(False, visible=False)
    theme.click(None, js=THEME_JS, api_visibility="private")
    lang.click(None, js=LANG_JS, api_visibility="private")
    return Sidebar(conversations, token, confirm, new, rename_box, delete)


def wire(demo: gr.Blocks, services: Services, bar: Sidebar, session: gr.State, user_id: gr.State,
         session_outputs: list, session_values) -> callable:
    """Attach events; returns `after_save(event)` that refreshes the list after a chat event."""
    store = services.store

    def listing(uid: str, current: str):
        return gr.Radio(choices=conversation_choices(store.list(uid), "…"), value=current or None)

    def show(uid, sess):
        return [listing(uid, sess.id if sess.messages else ""), sess, *session_values(sess)]

    @user_errors
    def resume(token: str, request: gr.Request):
        username = getattr(request, "username", None) if request else None
        uid = f"user:{username}" if username else (token if TOKEN_RE.match(token or "") else new_id())
        summaries = store.list(uid)
        sess = store.load(uid, summaries[0].id) if summaries else chat_task.new_session(services)
        return [uid, "" if username else uid, *show(uid, sess)]

    @user_errors
    def select(conv_id: str, uid: str, request: gr.Request):
        uid = user_of(uid, request)
        return show(uid, store.load(uid, conv_id))

    @user_errors
    def new(uid: str, request: gr.Request):
        uid = user_of(uid, request)
        return show(uid, chat_task.new_session(services))

    @user_errors
    def rename(title: str, sess, uid: str, request: gr.Request):
        uid = user_of(uid, request)
        if not sess.messages:
            raise InputError("Send a message first; empty conversations are not saved.", "")
        sess.title = store.rename(uid, sess.id, title)  # the cleaned, stored title
        return [listing(uid, sess.id), sess, ""]

    @user_errors
    def delete(confirmed: bool, sess, uid: str, request: gr.Request):
        uid = user_of(uid, request)
        if not confirmed:
            return [gr.skip()] * (2 + len(session_outputs))
        store.delete(uid, sess.id)
        summaries = store.list(uid)
        nxt = store.load(uid, summaries[0].id) if summaries else chat_task.new_session(services)
        return show(uid, nxt)

    outs = [bar.conversations, session, *session_outputs]
    demo.load(resume, [bar.token], [user_id, bar.token, *outs], js=READ_TOKEN_JS, api_name="resume").then(
        None, [bar.token], None, js=STORE_TOKEN_JS)
    bar.conversations.input(select, [bar.conversations, user_id], outs, api_name="select")
    bar.new.click(new, [user_id], outs, api_name="new")
    bar.rename_box.submit(rename, [bar.rename_box, session, user_id], [bar.conversations, session, bar.rename_box],
                          api_name="rename")
    bar.delete.click(delete, [bar.confirm, session, user_id], outs, js=CONFIRM_JS, api_name="delete")

    def refresh(uid, sess, request: gr.Request):
        return listing(user_of(uid, request), sess.id if sess.messages else "")

    def after_save(event):
        event.then(refresh, [user_id, session], bar.conversations, api_visibility="private")

    return after_save
