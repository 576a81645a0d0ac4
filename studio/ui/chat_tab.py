"""The chat tab: streaming transcript, input, stop/regenerate/undo/clear, settings, export."""

from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr
from pydantic import ValidationError

from studio.core.session import ChatSession
from studio.core.types import GenParams, Notice, TextDelta
from studio.errors import InputError
from studio.exports.conversation import conversation_json, conversation_markdown, export_filename
from studio.services import Services
from studio.tasks import chat as chat_task
from studio.ui.convert import chatbot_messages, user_of
from studio.ui.errors import user_errors
from studio.ui.pacing import FramePacer
from studio.ui.stops import StopSignals, run_key
from studio.ui.i18n import EXAMPLES

UI_FRAME_S = 0.05  # at most ~20 transcript updates a second while streaming


@dataclass
class ChatTab:
    """The tab's components that other parts of the app read or update."""

    chatbot: gr.Chatbot
    textbox: gr.Textbox
    notice: gr.Markdown
    system_prompt: gr.Textbox
    settings: list  # sampling components, in GenParams order (see _params)
    export_file: gr.File
    buttons: dict  # stop, regen, undo, clear, exp_md, exp_json


def settings_values(session: ChatSession) -> list:
    """Values for the system prompt box and the sampling controls of `session`."""
    p = session.params
    seed = -1 if p.seed is None else p.seed
    return [session.system_prompt, p.max_new_tokens, p.temperature, p.top_p, p.top_k,
            p.repetition_penalty, p.do_sample, seed]


def _apply_settings(session: ChatSession, system_prompt, mnt, temp, top_p, top_k, rep, sample, seed) -> None:
    try:
        session.params = GenParams(
            max_new_tokens=int(mnt), temperature=float(temp), top_p=float(top_p), top_k=int(top_k),
            repetition_penalty=float(rep), do_sample=bool(sample),
            seed=None if seed is None or int(seed) < 0 else int(seed),
        )
    except (ValidationError, TypeError, ValueError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else {"loc": ("?",), "msg": str(exc)}
        raise InputError(f"Invalid setting {first['loc'][0]}: {first['msg']}.", "Adjust it in Parameters.") from None
    session.system_prompt = system_prompt or ""


def build(t) -> ChatTab:
    """Lay out the tab inside the current Blocks context."""
    chatbot = gr.Chatbot(
        elem_id="chatbot", show_label=False, height="62vh", buttons=["copy", "copy_all"],
        sanitize_html=True, allow_tags=False, render_markdown=True, placeholder=t("chat_placeholder"),
        latex_delimiters=[{"left": "$$", "right": "$$", "display": True}],
    )
    notice = gr.Markdown("", elem_id="chat-notice")
    textbox = gr.Textbox(
        elem_id="chat-input", show_label=False, placeholder=t("input_placeholder"), lines=1, max_lines=12,
        submit_btn=True, autofocus=True,
    )
    with gr.Row(elem_classes=["chat-actions"]):
        stop = gr.Button(t("stop"), size="sm", variant="stop", elem_id="stop-btn")
        regen = gr.Button(t("regenerate"), size="sm", elem_id="regen-btn")
        undo = gr.Button(t("undo"), size="sm", elem_id="undo-btn")
        clear = gr.Button(t("clear"), size="sm", elem_id="clear-btn")
    gr.Examples(EXAMPLES, inputs=[textbox], label=t("examples"))
    with gr.Accordion(t("parameters"), open=False):
        system_prompt = gr.Textbox("", label=t("system_prompt"), lines=3, max_lines=10, elem_id="system-prompt")
        with gr.Row():
            mnt = gr.Slider(1, 8192, value=512, step=1, label=t("max_new_tokens"))
            temp = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label=t("temperature"))
            top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label=t("top_p"))
        with gr.Row():
            top_k = gr.Slider(0, 200, value=50, step=1, label=t("top_k"))
            rep = gr.Slider(0.8, 2.0, value=1.1, step=0.01, label=t("repetition_penalty"))
            seed = gr.Number(-1, precision=0, minimum=-1, maximum=2**32 - 1, label=t("seed"))
        sample = gr.Checkbox(True, label=t("do_sample"))
    with gr.Accordion(t("export"), open=False):
        with gr.Row():
            exp_md = gr.Button(t("export_md"), size="sm", elem_id="export-md")
            exp_json = gr.Button(t("export_json"), size="sm", elem_id="export-json")
        export_file = gr.File(show_label=False, interactive=False, elem_id="export-file")
    return ChatTab(chatbot, textbox, notice, system_prompt, [mnt, temp, top_p, top_k, rep, sample, seed],
                   export_file, dict(stop=stop, regen=regen, undo=undo, clear=clear, exp_md=exp_md, exp_json=exp_json))


def wire(services: Services, tab: ChatTab, session: gr.State, user_id: gr.State, after_save,
         pacer: FramePacer) -> None:
    """Attach the tab's events; `after_save(event)` chains the sidebar refresh; `pacer` spaces updates."""
    b = tab.buttons
    settings = [tab.system_prompt, *tab.settings]
    # Listeners that run the model share one queue per engine, so tabs never fight over it;
    # an lmdeploy engine batches, so its queue lets max_batch_size requests run at once.
    model_queue = dict(concurrency_id="engine:chat", concurrency_limit=services.engines.concurrency("chat"))
    stops = StopSignals()  # one per app: what Stop sets for each browser session's running reply

    def stream(events, sess: ChatSession, box_value: str):
        notice, level, shown = "", "info", 0.0
        yield chatbot_messages(sess), box_value, sess, notice
        with pacer.streaming():
            for ev in events:
                if isinstance(ev, Notice):
                    notice, level = ev.text, ev.level
                    if ev.level == "warning":
                        gr.Warning(ev.text)
                elif ev.finish_reason == "error":
                    events.close()  # the task saves the reply, marked partial, before the error shows
                    raise InputError(f"Generation failed: {ev.error}", "Try again; if it repeats, check the model.")
                elif level == "info":
                    notice = ""  # "waiting for the model" is over once text flows; warnings stay
                # Every update re-sends the transcript: batch tokens into frames (fewer per stream when
                # many users stream at once) so the server keeps up. The final update always goes out.
                if isinstance(ev, TextDelta) and not ev.finish_reason and not pacer.due(shown, UI_FRAME_S):
                    continue
                shown = time.monotonic()
                yield chatbot_messages(sess), box_value, sess, notice
        # The task has ended and saved: show exactly what was stored (an empty reply is gone).
        yield chatbot_messages(sess), box_value, sess, notice

    # Explicit parameter names: they are the public API's argument names (gradio_client, /call).
    @user_errors
    def on_send(text, sess, uid, system_prompt, max_new_tokens, temperature, top_p, top_k,
                repetition_penalty, do_sample, seed, request: gr.Request):
        _apply_settings(sess, system_prompt, max_new_tokens, temperature, top_p, top_k,
                        repetition_penalty, do_sample, seed)
        chat_task.validate_prompt(services, text)
        with stops.run(run_key(request)) as cancel:
            yield from stream(chat_task.send(services, user_of(uid, request), sess, text, cancel), sess, "")

    @user_errors
    def on_regenerate(sess, uid, system_prompt, max_new_tokens, temperature, top_p, top_k,
                      repetition_penalty, do_sample, seed, request: gr.Request):
        _apply_settings(sess, system_prompt, max_new_tokens, temperature, top_p, top_k,
                        repetition_penalty, do_sample, seed)
        with stops.run(run_key(request)) as cancel:
            yield from stream(chat_task.regenerate(services, user_of(uid, request), sess, cancel), sess, gr.skip())

    @user_errors
    def on_undo(sess, uid, request: gr.Request):
        text = chat_task.undo(services, user_of(uid, request), sess)
        return chatbot_messages(sess), text, sess, ""

    @user_errors
    def on_clear(sess, uid, request: gr.Request):
        chat_task.clear(services, user_of(uid, request), sess)
        return [], "", sess, ""

    outs = [tab.chatbot, tab.textbox, session, tab.notice]
    # Stop signals the run instead of cancelling the event (see studio/ui/stops.py).
    stops.forget_on(tab.textbox.submit, b["regen"].click)
    send_ev = tab.textbox.submit(on_send, [tab.textbox, session, user_id, *settings], outs,
                                 api_name="chat", **model_queue)
    regen_ev = b["regen"].click(on_regenerate, [session, user_id, *settings], outs,
                                api_name="regenerate", **model_queue)
    for ev in (send_ev, regen_ev):
        after_save(ev)
    stops.stop_on(b["stop"].click, tab.textbox.stop)
    after_save(b["undo"].click(on_undo, [session, user_id], outs, api_name="undo"))
    after_save(b["clear"].click(on_clear, [session, user_id], outs, api_name="clear"))
    # The Chatbot's own trash icon must clear the saved conversation too, not just the view.
    after_save(tab.chatbot.clear(on_clear, [session, user_id], outs, api_visibility="private"))

    @user_errors
    def export(kind, sess, uid):
        if not sess.messages:
            gr.Info("This conversation is empty: chat first, then export.")  # harmless: a notice, no file
            return None
        model = services.engines.label(sess.engine)
        data = conversation_markdown(sess, model) if kind == "md" else conversation_json(sess, model)
        return str(services.files.export(export_filename(sess.display_title(), kind), data))

    b["exp_md"].click(lambda s, u: export("md", s, u), [session, user_id], tab.export_file, api_name="export_markdown")
    b["exp_json"].click(lambda s, u: export("json", s, u), [session, user_id], tab.export_file, api_name="export_json")
