"""Message versions in the chat tab: edit any message you wrote, and a ‹ n/m › bar that switches versions.

Gradio's Chatbot has no per-message pager, so each message with versions carries a ‹ n/m › mark in the
transcript (studio.ui.convert.version_mark) and one bar under the transcript switches the versions of
the message last clicked (by default the latest one that has versions). Message indices in the public
API (/edit, /version) are the Chatbot value's, as clients see them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import gradio as gr

from studio.core.session import ChatSession
from studio.errors import InputError
from studio.services import Services
from studio.tasks import chat as chat_task
from studio.ui.convert import VERSION_MARK_RE, chatbot_messages, shown_indices, shown_text, user_of
from studio.ui.errors import user_errors
from studio.ui.i18n import page_lang, tr
from studio.ui.stops import run_key

# The Chatbot's edit box opens with the message as shown, ‹ n/m › mark included: take the mark out as the
# box appears (the server strips it too, for API callers and in case this has not run yet).
STRIP_MARK_JS = r"""() => {
  if (window.__puyuVersionMarks) return;
  window.__puyuVersionMarks = true;
  const mark = /\s*\*?‹ \d+\/\d+ ›\*?\s*$/;
  const strip = (box) => {
    if (!mark.test(box.value)) return;
    box.value = box.value.replace(mark, '');
    box.dispatchEvent(new Event('input', {bubbles: true}));
  };
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) {
      if (!(n instanceof Element)) continue;
      const boxes = n.matches('textarea') ? [n] : [...n.querySelectorAll('textarea')];
      boxes.filter((b) => b.closest('#chatbot')).forEach(strip);
    }
  }).observe(document.body, {childList: true, subtree: true});
}"""
LATEST = -1  # the bar's selection when no message was clicked: the latest one with versions
_AT_ONCE = dict(queue=False, api_visibility="private", show_progress="hidden")
# Steps that may refuse: queued (the page shows a queued event's error as a toast, not a non-queued one's),
# but outside the model's queue, so a running reply never holds them back.
_CHECK = dict(api_visibility="private", show_progress="hidden", concurrency_limit=None)


@dataclass
class VersionBar:
    """The ‹ n/m › bar, the message it shows (a session index), and the hidden inputs of /edit and /version."""

    row: gr.Row
    prev: gr.Button
    label: gr.Markdown
    next: gr.Button
    selected: gr.State
    message_index: gr.Number
    text: gr.Textbox
    version: gr.Number

    def outputs(self) -> list:
        """What a refresh of the bar updates."""
        return [self.row, self.prev, self.label, self.next, self.selected]


def build(t) -> VersionBar:
    """Lay out the bar (hidden until a message has versions) inside the current Blocks context."""
    with gr.Row(visible=False, elem_id="versions-bar", elem_classes=["versions-bar"]) as row:
        prev = gr.Button(t("versions_prev"), size="sm", min_width=40, scale=0, elem_id="versions-prev")
        label = gr.Markdown("", elem_id="versions-label")
        nxt = gr.Button(t("versions_next"), size="sm", min_width=40, scale=0, elem_id="versions-next")
    index = gr.Number(0, precision=0, visible=False)
    text = gr.Textbox("", visible=False)
    version = gr.Number(1, precision=0, visible=False)
    return VersionBar(row, prev, label, nxt, gr.State(LATEST), index, text, version)


def to_session_index(session: ChatSession, message_index) -> int:
    """The session index of Chatbot message `message_index` (one past the last: the next message)."""
    shown = shown_indices(session)
    try:
        i = int(message_index)
    except (TypeError, ValueError):
        raise InputError(f"Message index {message_index!r} is not a number.", "Give the message's position, from 0.")
    if 0 <= i < len(shown):
        return shown[i]
    if i == len(shown):
        return len(session.messages)
    raise InputError(f"There is no message {i}; this conversation shows {len(shown)}.",
                     "Count the messages from 0, as the transcript lists them.")


def to_message_index(session: ChatSession, at: int) -> int:
    """The Chatbot index of session message `at` (the inverse of to_session_index)."""
    shown = shown_indices(session)
    return shown.index(at) if at in shown else len(shown)


def shown_fork(session: ChatSession, selected: int) -> int | None:
    """The session index whose versions the bar shows: the selected one if it still has versions, else the latest."""
    keys = [k for k in session.forks if k <= len(session.messages)]
    if selected in keys:
        return selected
    return max(keys) if keys else None


def edited_text(value) -> str:
    """The text of an edit as the Chatbot sends it (a string or text blocks), without its ‹ n/m › mark."""
    if isinstance(value, list):
        value = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in value)
    return shown_text(re.sub(VERSION_MARK_RE, "", str(value or "")))


class _Handlers:
    """The bar's handlers; `chat` is the chat tab's (its Stop signals, stream and settings)."""

    def __init__(self, services: Services, bar: VersionBar, chat, apply_settings: Callable) -> None:
        self.services, self.bar, self.chat, self.apply_settings = services, bar, chat, apply_settings

    def _refuse_while_streaming(self, request: gr.Request) -> None:
        # Both change the transcript the running reply writes into: refuse rather than queue behind it.
        if self.chat.stops.running(run_key(request)):
            raise InputError(tr(page_lang(request), "versions_busy"), "")

    def bar_values(self, sess: ChatSession, selected: int, request: gr.Request) -> dict:
        """The bar for `sess`: hidden without versions, else the selected message's ‹ k/m ›."""
        bar, at = self.bar, shown_fork(sess, selected)
        if at is None:
            return {bar.row: gr.Row(visible=False), bar.selected: LATEST, bar.label: "",
                    bar.prev: gr.skip(), bar.next: gr.skip()}
        lang, (k, m) = page_lang(request), sess.version_of(at)
        if at < len(sess.messages):
            text = tr(lang, "versions_label", n=to_message_index(sess, at) + 1, k=k, m=m)
        else:
            text = tr(lang, "versions_label_next", k=k, m=m)
        if len([f for f in sess.forks if f <= len(sess.messages)]) > 1:
            text += tr(lang, "versions_hint")
        return {bar.row: gr.Row(visible=True), bar.selected: at, bar.label: text,
                bar.prev: gr.Button(interactive=k > 1), bar.next: gr.Button(interactive=k < m)}

    @user_errors
    def refresh(self, sess, selected, request: gr.Request):
        return self.bar_values(sess, selected, request)

    @user_errors
    def reset(self, sess, request: gr.Request):
        return self.bar_values(sess, LATEST, request)

    @user_errors
    def pick(self, sess, selected, evt: gr.SelectData, request: gr.Request):
        """A click on a message: show its versions, if it has any."""
        at = to_session_index(sess, evt.index if isinstance(evt.index, int) else evt.index[0])
        return self.bar_values(sess, at if at in sess.forks else selected, request)

    @user_errors
    def request_edit(self, sess, evt: gr.EditData, request: gr.Request):
        """The page's edit of a message, handed to /edit once no reply is streaming."""
        self._refuse_while_streaming(request)
        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        return {self.bar.message_index: index, self.bar.text: edited_text(evt.value),
                self.bar.selected: to_session_index(sess, index)}

    def restore(self, sess, request: gr.Request):
        """The transcript as stored, after a refused edit (the page shows the edited text already)."""
        return chatbot_messages(sess, page_lang(request))

    @user_errors
    def on_edit(self, message_index, text, sess, uid, system_prompt, max_new_tokens, temperature, top_p, top_k,
                repetition_penalty, do_sample, seed, request: gr.Request):
        """Edit message `message_index` (a Chatbot index) to `text` and stream the reply from there."""
        self._refuse_while_streaming(request)
        self.apply_settings(sess, system_prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                            top_p=top_p, top_k=top_k, repetition_penalty=repetition_penalty,
                            do_sample=do_sample, seed=seed)
        at, text = to_session_index(sess, message_index), edited_text(text)
        chat_task.validate_prompt(self.services, text)  # before the first frame: a refusal leaves the page as it was
        with self.chat.stops.run(run_key(request)) as cancel:
            events = chat_task.edit(self.services, user_of(uid, request), sess, at, text, cancel)
            yield from self.chat._stream(events, sess, gr.skip(), page_lang(request))

    def step(self, delta: int):
        """The handler of ‹ (delta -1) or › (+1): the version to show, handed to /version."""
        def go(sess, selected, request: gr.Request):
            self._refuse_while_streaming(request)
            at = shown_fork(sess, selected)
            if at is None:
                raise InputError("This conversation has no other versions.", "", key="err_no_versions")
            k, m = sess.version_of(at)
            return {self.bar.message_index: to_message_index(sess, at), self.bar.version: min(max(k + delta, 1), m)}

        go.__name__ = f"on_version_{'prev' if delta < 0 else 'next'}"
        return user_errors(go)

    @user_errors
    def on_version(self, message_index, version, sess, uid, request: gr.Request):
        """Show version `version` (from 1) of the conversation from message `message_index` on."""
        self._refuse_while_streaming(request)
        at = to_session_index(sess, message_index)
        try:
            number = int(version)
        except (TypeError, ValueError):
            raise InputError(f"Version {version!r} is not a number.", "Give a version from 1.") from None
        chat_task.switch_version(self.services, user_of(uid, request), sess, at, number)
        return {self.chat.tab.chatbot: chatbot_messages(sess, page_lang(request)), self.chat.tab.session: sess,
                self.bar.selected: at}


def wire(services: Services, tab, chat, user_id: gr.State, apply_settings: Callable, after_save: Callable,
         model_queue: dict) -> Callable:
    """Attach the edit and version events of `tab` (the chat tab; `chat` its handlers); returns
    `refresh_after(event, latest=False)`, which updates the bar once `event` has changed the conversation."""
    bar = tab.versions
    h = _Handlers(services, bar, chat, apply_settings)
    session, settings = tab.session, tab.settings.inputs()

    def refresh_after(event, latest: bool = False):
        # latest: the event made a new version at the end (regenerate): show that one, not the one clicked.
        if latest:
            event.then(h.reset, [session], bar.outputs(), **_AT_ONCE)
        else:
            event.then(h.refresh, [session, bar.selected], bar.outputs(), **_AT_ONCE)

    chat.stops.forget_on(tab.chatbot.edit)  # a Stop pressed while nothing ran must not stop the edit's reply
    asked = tab.chatbot.edit(h.request_edit, [session], [bar.message_index, bar.text, bar.selected], **_CHECK)
    asked.failure(h.restore, [session], [tab.chatbot], **_AT_ONCE)
    edited = asked.success(h.on_edit, [bar.message_index, bar.text, session, user_id, *settings],
                           tab.reply_outputs(), api_name="edit", **model_queue)
    edited.failure(h.restore, [session], [tab.chatbot], **_AT_ONCE)  # e.g. an emptied message: shown as stored
    after_save(edited)
    refresh_after(edited)
    switched_outs = [tab.chatbot, session, bar.selected]
    for button, delta in ((bar.prev, -1), (bar.next, 1)):
        asked = button.click(h.step(delta), [session, bar.selected], [bar.message_index, bar.version], **_CHECK)
        switched = asked.success(h.on_version, [bar.message_index, bar.version, session, user_id], switched_outs,
                                 api_name="version" if delta > 0 else None,
                                 api_visibility="public" if delta > 0 else "private")
        after_save(switched)  # the title follows the first message shown
        refresh_after(switched)
    tab.chatbot.select(h.pick, [session, bar.selected], bar.outputs(), **_AT_ONCE)
    return refresh_after


def reset_after(services: Services, tab, event) -> None:
    """After `event` shows another conversation, the bar shows its latest versions (and the page strips
    marks from edit boxes: the first such event is the page's load)."""
    bar = tab.versions

    event.then(_Handlers(services, bar, None, None).reset, [tab.session], bar.outputs(), **_AT_ONCE)
    event.then(None, None, None, js=STRIP_MARK_JS, api_visibility="private")
