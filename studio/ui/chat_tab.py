"""The chat tab: streaming transcript, input, stop/regenerate/undo/clear, settings, export."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any, Optional

import gradio as gr
from gradio.i18n import I18nData
from pydantic import ValidationError

from studio.core.session import ChatSession
from studio.core.types import GenParams, Notice, TextDelta
from studio.errors import InputError
from studio.exports import EXPORTS, export_kinds
from studio.services import Services
from studio.tasks import chat as chat_task
from studio.ui import chat_versions, homework_export, prompt_presets
from studio.ui.bilingual import examples
from studio.ui.chat_page import Generating
from studio.ui.convert import ShownTexts, chatbot_messages, user_of
from studio.ui.errors import user_errors
from studio.ui.i18n import EXAMPLES, notice_text, page_lang, tr
from studio.ui.icons import icon
from studio.ui.pacing import FramePacer
from studio.ui.stops import StopSignals, run_key

UI_FRAME_S = 0.05  # at most ~20 transcript updates a second while streaming


def _loaded(services: Services, engine: str) -> bool:
    return services.engines.state(engine).state in ("ready", "failed")


def prompt_hint(services: Services, session: ChatSession) -> gr.Textbox:
    """The prompt box's placeholder for `session`: its prompt may be none, the model's default not known yet,
    or (None once the model has loaded) a default the model does not disclose."""
    if session.system_prompt is not None:
        key = "system_prompt_none"
    elif _loaded(services, session.engine):
        key = "system_prompt_model"
    else:
        key = "system_prompt_pending"
    return gr.Textbox(placeholder=I18nData(key))


@dataclass
class Settings:
    """The Parameters controls; field order is the handlers' (and the public API's) argument order."""

    system_prompt: gr.Textbox
    max_new_tokens: gr.Slider
    temperature: gr.Slider
    top_p: gr.Slider
    top_k: gr.Slider
    repetition_penalty: gr.Slider
    do_sample: gr.Checkbox
    seed: gr.Number

    def inputs(self) -> list:
        """The controls in argument order."""
        return [getattr(self, f.name) for f in fields(self)]

    def values(self, session: ChatSession) -> dict:
        """What each control shows for `session`."""
        p = session.params
        return {self.system_prompt: session.system_prompt or "", self.max_new_tokens: p.max_new_tokens,
                self.temperature: p.temperature, self.top_p: p.top_p, self.top_k: p.top_k,
                self.repetition_penalty: p.repetition_penalty, self.do_sample: p.do_sample,
                self.seed: -1 if p.seed is None else p.seed}


@dataclass
class ChatButtons:
    """The tab's buttons; `exports` by export kind, one for each conversation export EXPORTS holds."""

    stop: gr.Button
    regen: gr.Button
    undo: gr.Button
    clear: gr.Button
    exports: dict[str, gr.Button]


@dataclass
class ChatTab:
    """The tab's components, its per-browser session and the engine it talks to."""

    engine: str
    session: gr.State
    chatbot: gr.Chatbot
    textbox: gr.Textbox
    notice: gr.Markdown
    settings: Settings
    export_file: gr.File
    buttons: ChatButtons
    versions: chat_versions.VersionBar
    homework: Optional[gr.Button] = None  # the homework bundle's export (studio/ui/homework_export.py)
    presets: Any = None  # prompt_presets.PresetControls beside the system prompt box

    def reply_outputs(self) -> list:
        """What a send, regenerate, undo or clear updates."""
        return [self.chatbot, self.textbox, self.session, self.notice]

    def session_outputs(self) -> list:
        """What showing another conversation updates (the sidebar's events)."""
        return [self.session, self.chatbot, self.notice, *self.settings.inputs()]

    def session_values(self, session: ChatSession, lang: str = "en") -> dict:
        """The values of `session_outputs` for `session`, its stats lines in `lang` (the page's, see page_lang)."""
        return {self.session: session, self.chatbot: chatbot_messages(session, lang), self.notice: "",
                **self.settings.values(session)}


def _apply_settings(session: ChatSession, system_prompt: Optional[str], **params) -> None:
    """Validate the controls into `session`; a system prompt that is given replaces the conversation's."""
    try:
        seed = params.pop("seed")
        session.params = GenParams(
            max_new_tokens=int(params["max_new_tokens"]), temperature=float(params["temperature"]),
            top_p=float(params["top_p"]), top_k=int(params["top_k"]),
            repetition_penalty=float(params["repetition_penalty"]), do_sample=bool(params["do_sample"]),
            seed=None if seed is None or int(seed) < 0 else int(seed),
        )
    except (ValidationError, TypeError, ValueError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else {"loc": ("?",), "msg": str(exc)}
        raise InputError(f"Invalid setting {first['loc'][0]}: {first['msg']}.", "Adjust it in Parameters.",
                         key="err_setting", values={"name": first["loc"][0]}) from None
    # An empty value leaves the conversation's prompt as it is: API callers that leave the argument out send
    # "", and the page tells an emptied box (no system prompt) through the box's own event (on_system_prompt).
    if system_prompt:
        session.system_prompt = system_prompt


def _settings(t) -> Settings:
    # Stacked, one control a line: they sit in the narrow column beside the transcript.
    system_prompt = gr.Textbox("", label=t("system_prompt"), lines=3, max_lines=10, elem_id="system-prompt",
                               placeholder=t("system_prompt_pending"))
    mnt = gr.Slider(1, 8192, value=512, step=1, label=t("max_new_tokens"))
    temp = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label=t("temperature"))
    top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label=t("top_p"))
    top_k = gr.Slider(0, 200, value=50, step=1, label=t("top_k"))
    rep = gr.Slider(0.8, 2.0, value=1.1, step=0.01, label=t("repetition_penalty"))
    seed = gr.Number(-1, precision=0, minimum=-1, maximum=2**32 - 1, label=t("seed"))
    sample = gr.Checkbox(True, label=t("do_sample"))
    return Settings(system_prompt, mnt, temp, top_p, top_k, rep, sample, seed)


# Math as the models write it: display $$…$$ and \[…\], inline $…$ and \(…\) ($$ first, so it is not read as $).
LATEX_DELIMITERS = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "\\[", "right": "\\]", "display": True},
    {"left": "$", "right": "$", "display": False},
    {"left": "\\(", "right": "\\)", "display": False},
]


def _transcript(t) -> tuple[gr.Chatbot, Any, gr.Markdown, gr.Textbox, dict]:
    """The transcript, its versions bar, the notice line, the prompt box and the action buttons."""
    chatbot = gr.Chatbot(
        elem_id="chatbot", show_label=False, height="62vh", buttons=["copy", "copy_all"],
        sanitize_html=True, allow_tags=False, render_markdown=True, placeholder=t("chat_placeholder"),
        latex_delimiters=LATEX_DELIMITERS, editable="user",
    )
    versions = chat_versions.build(t)
    notice = gr.Markdown("", elem_id="chat-notice")
    textbox = gr.Textbox(
        elem_id="chat-input", show_label=False, placeholder=t("input_placeholder"), lines=1, max_lines=12,
        submit_btn=True, autofocus=True,
    )
    with gr.Row(elem_classes=["chat-actions"]):
        buttons = dict(stop=gr.Button(t("stop"), size="sm", variant="stop", elem_id="stop-btn", icon=icon("stop")),
                       regen=gr.Button(t("regenerate"), size="sm", elem_id="regen-btn", icon=icon("regenerate")),
                       undo=gr.Button(t("undo"), size="sm", elem_id="undo-btn", icon=icon("undo")),
                       clear=gr.Button(t("clear"), size="sm", elem_id="clear-btn", icon=icon("trash")))
    examples(EXAMPLES, textbox, t("examples"), "chat-examples")
    return chatbot, versions, notice, textbox, buttons


def build(t, engine: str) -> ChatTab:
    """Lay out the tab inside the current Blocks context; it talks to `engine`."""
    session = gr.State(ChatSession(engine=engine))
    # Parameters and Export in a column beside the transcript: on a laptop screen (1366x768) they would
    # sit below the fold under it.
    with gr.Row(elem_id="chat-layout", equal_height=False):
        with gr.Column(scale=4, min_width=420):
            chatbot, versions, notice, textbox, buttons = _transcript(t)
        with gr.Column(scale=1, min_width=300, elem_id="chat-side"):
            with gr.Accordion(t("export"), open=False, elem_id="export-panel"):
                exports = {kind: gr.Button(t(f"chat_export_{kind}"), size="sm", elem_id=f"export-{kind}")
                           for kind in export_kinds("conversation")}
                homework = homework_export.button(t, "export-homework")
                export_file = gr.File(show_label=False, interactive=False, elem_id="export-file")
            with gr.Accordion(t("parameters"), open=False, elem_id="parameters-panel"):
                presets = prompt_presets.build(t)
                settings = _settings(t)
    return ChatTab(engine, session, chatbot, textbox, notice, settings, export_file,
                   ChatButtons(**buttons, exports=exports), versions, homework=homework, presets=presets)


class _Handlers:
    """The tab's event handlers over one app's Services (their parameter names are the public API's)."""

    def __init__(self, services: Services, tab: ChatTab, pacer: FramePacer) -> None:
        self.services, self.tab, self.pacer = services, tab, pacer
        self.stops = StopSignals()  # one per app: what Stop sets for each browser session's running reply
        self.texts = ShownTexts()  # one per app: earlier messages are converted once, not every frame

    def _frame(self, sess: ChatSession, box_value, notice: str, lang: str = "en") -> dict:
        tab = self.tab
        return {tab.chatbot: chatbot_messages(sess, lang, self.texts), tab.textbox: box_value, tab.session: sess,
                tab.notice: notice}

    def _stream(self, events, sess: ChatSession, box_value, lang: str):
        """The reply's frames; while it runs the notice shows the generating state (see Generating)."""
        notice, level, shown = "", "info", 0.0
        state = Generating(lang, time.monotonic())
        yield self._frame(sess, box_value, state.notice(notice, level), lang)
        try:
            with self.pacer.streaming():
                for ev in events:
                    if isinstance(ev, Notice):
                        notice, level = notice_text(lang, ev), ev.level
                        if ev.level == "warning":
                            gr.Warning(notice)
                    elif ev.finish_reason == "error":
                        events.close()  # the task saves the reply, marked partial, before the error shows
                        raise InputError(f"Generation failed: {ev.error}", "Try again; if it repeats, check the model.",
                                         key="err_generation_failed", values={"error": ev.error})
                    else:
                        state.pieces += bool(ev.text)
                        if level == "info":
                            notice = ""  # "waiting for the model" is over once text flows; warnings stay
                    # Every update re-sends the transcript: batch tokens into frames (fewer per stream when
                    # many users stream at once) so the server keeps up. The final update always goes out.
                    if isinstance(ev, TextDelta) and not ev.finish_reason and not self.pacer.due(shown, UI_FRAME_S):
                        continue
                    shown = time.monotonic()
                    yield self._frame(sess, box_value, state.notice(notice, level), lang)
        except Exception:
            # The generating state must not outlive the run: show what is stored, then let the error through.
            yield self._frame(sess, box_value, notice if level == "warning" else "", lang)
            raise
        # The task has ended and saved: show exactly what was stored (an empty reply is gone).
        yield self._frame(sess, box_value, notice, lang)

    @user_errors
    def on_send(self, text, sess, uid, system_prompt, max_new_tokens, temperature, top_p, top_k,
                repetition_penalty, do_sample, seed, request: gr.Request):
        _apply_settings(sess, system_prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                        top_k=top_k, repetition_penalty=repetition_penalty, do_sample=do_sample, seed=seed)
        chat_task.validate_prompt(self.services, text)
        with self.stops.run(run_key(request)) as cancel:
            events = chat_task.send(self.services, user_of(uid, request), sess, text, cancel)
            yield from self._stream(events, sess, "", page_lang(request))

    @user_errors
    def on_regenerate(self, sess, uid, system_prompt, max_new_tokens, temperature, top_p, top_k,
                      repetition_penalty, do_sample, seed, request: gr.Request):
        _apply_settings(sess, system_prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                        top_k=top_k, repetition_penalty=repetition_penalty, do_sample=do_sample, seed=seed)
        with self.stops.run(run_key(request)) as cancel:
            events = chat_task.regenerate(self.services, user_of(uid, request), sess, cancel)
            yield from self._stream(events, sess, gr.skip(), page_lang(request))

    @user_errors
    def on_system_prompt(self, system_prompt, sess):
        """The box as the page sends it: its text, or, emptied, no system prompt at all (an empty box that
        never showed a default leaves the model's default to come)."""
        text = chat_task.validate_system_prompt(self.services, system_prompt)
        if text or sess.system_prompt is not None:
            sess.system_prompt = text
        return {self.tab.session: sess}

    @user_errors
    def on_undo(self, sess, uid, request: gr.Request):
        text = chat_task.undo(self.services, user_of(uid, request), sess)
        return self._frame(sess, text, "", page_lang(request))

    @user_errors
    def on_clear(self, sess, uid, request: gr.Request):
        chat_task.clear(self.services, user_of(uid, request), sess)
        return self._frame(sess, "", "")

    def on_export(self, kind: str):
        """The handler that downloads the conversation as export `kind` (a notice when it is empty)."""
        @user_errors
        def export(sess, request: gr.Request):
            if not sess.messages:
                gr.Info(tr(page_lang(request), "notice_export_empty_chat"))  # harmless: a notice, no file
                return None
            result = EXPORTS.get(f"conversation_{kind}")(sess, self.services.engines.label(sess.engine))
            return str(self.services.files.export(result.filename, result.data))

        export.__name__ = f"on_export_{kind}"
        return export


def wire(services: Services, tab: ChatTab, user_id: gr.State, after_save, pacer: FramePacer) -> None:
    """Attach the tab's events; `after_save(event)` chains the sidebar refresh; `pacer` spaces updates."""
    h, b = _Handlers(services, tab, pacer), tab.buttons
    # Listeners that run the model share one queue per engine, so tabs never fight over it;
    # an engine that batches (lmdeploy, transformers) lets max_batch_size requests run at once.
    model_queue = dict(concurrency_id=f"engine:{tab.engine}",
                       concurrency_limit=services.engines.concurrency(tab.engine))
    outs, settings = tab.reply_outputs(), tab.settings.inputs()
    # Stop signals the run instead of cancelling the event (see studio/ui/stops.py).
    h.stops.forget_on(tab.textbox.submit, b.regen.click)
    # The page first hands over the prompt box as it stands (emptied: none); API callers that call /chat
    # directly and leave system_prompt out keep the conversation's (see _apply_settings).
    box = [tab.settings.system_prompt, tab.session]
    send = tab.textbox.submit(h.on_system_prompt, box, [tab.session], api_name="system_prompt", queue=False)
    sent = send.then(h.on_send, [tab.textbox, tab.session, user_id, *settings], outs, api_name="chat", **model_queue)
    regen = b.regen.click(h.on_system_prompt, box, [tab.session], api_visibility="private", queue=False)
    regen = regen.then(h.on_regenerate, [tab.session, user_id, *settings], outs, api_name="regenerate", **model_queue)
    h.stops.stop_on(b.stop.click, tab.textbox.stop)
    refresh_versions = chat_versions.wire(services, tab, h, user_id, _apply_settings, after_save, model_queue)

    undo = b.undo.click(h.on_undo, [tab.session, user_id], outs, api_name="undo")
    clear = b.clear.click(h.on_clear, [tab.session, user_id], outs, api_name="clear")
    # The Chatbot's own trash icon must clear the saved conversation too, not just the view.
    trash = tab.chatbot.clear(h.on_clear, [tab.session, user_id], outs, api_visibility="private")
    for event in (sent, regen, undo, clear, trash):
        after_save(event)
        refresh_versions(event, latest=event is regen)
    for kind, button in b.exports.items():
        button.click(h.on_export(kind), [tab.session], tab.export_file, api_name=f"export_{kind}")
    if tab.homework is not None:
        homework_export.wire_chat(services, tab.homework, tab.session, tab.export_file)


def resolve_prompt(services: Services, session: ChatSession) -> bool:
    """Fill a system prompt still waiting for the model's default, once it is known; True if it changed."""
    return session.system_prompt is None and chat_task.resolve_system_prompt(services, session)


def show_default_prompt(services: Services, tab: ChatTab, session: ChatSession) -> dict:
    """The session and its prompt box, once the model's default has filled a prompt that waited for it."""
    if resolve_prompt(services, session):
        return {tab.session: session, tab.settings.system_prompt: gr.Textbox(
            value=session.system_prompt, placeholder=I18nData("system_prompt_none"))}
    if session.system_prompt is None and _loaded(services, session.engine):  # loaded, and still no default
        return {tab.settings.system_prompt: prompt_hint(services, session)}
    return {}


def hint_after(services: Services, tab: ChatTab, event) -> None:
    """After `event` shows a session, fit the prompt box's placeholder to it (a private step: the public
    events return the box's plain value)."""
    def hint(sess):
        return prompt_hint(services, sess)

    event.then(hint, [tab.session], [tab.settings.system_prompt], api_visibility="private", queue=False)
    chat_versions.reset_after(services, tab, event)
