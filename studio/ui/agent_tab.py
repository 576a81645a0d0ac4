"""The agent tab (智能体): a model that calls tools, each step a collapsible message, Stop kills a running tool."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import gradio as gr

from studio.core.session import ChatSession
from studio.core.types import Notice, TextDelta
from studio.errors import InputError, StudioError
from studio.exports import EXPORTS, export_kinds
from studio.services import Services
from studio.tasks import agent as agent_task
from studio.ui.agent_view import agent_messages
from studio.ui.bilingual import examples, no_native_tools, sandbox_note, sandbox_refused
from studio.ui.convert import user_of
from studio.ui.errors import user_errors
from studio.ui.i18n import AGENT_EXAMPLES, notice_text, page_lang, tr
from studio.ui.icons import icon
from studio.ui.pacing import FramePacer
from studio.ui.stops import StopSignals, run_key

UI_FRAME_S = 0.05
PROBE = ("sandbox-probe", "protections")  # a throwaway interpreter that reports what this machine applies


@dataclass
class AgentTab:
    """The tab's components and the engine it talks to."""

    engine: str
    session: gr.State
    chatbot: gr.Chatbot
    textbox: gr.Textbox
    notice: gr.Markdown
    panel: gr.Markdown
    protections: gr.Markdown
    tools: gr.CheckboxGroup
    interpreter: gr.Checkbox
    max_steps: gr.Slider
    files: gr.File
    system_prompt: gr.Textbox
    plugin_prompt: gr.Textbox
    interpreter_prompt: gr.Textbox
    stop: gr.Button
    clear: gr.Button
    new: gr.Button
    exports: dict[str, gr.Button]
    export_file: gr.File

    def outputs(self) -> list:
        """What a send, clear, new or resume updates."""
        return [self.chatbot, self.textbox, self.session, self.notice, self.files, self.panel]


def build(t, services: Services, engine: str) -> AgentTab:
    """Lay out the tab inside the current Blocks context; it talks to `engine`."""
    session = gr.State(agent_task.new_session(services))
    panel = gr.Markdown("", elem_id="agent-panel")
    chatbot = gr.Chatbot(elem_id="agent-chatbot", show_label=False, height="58vh", buttons=["copy"],
                         sanitize_html=True, allow_tags=False, render_markdown=True,
                         placeholder=t("agent_placeholder"))
    notice = gr.Markdown("", elem_id="agent-notice")
    textbox = gr.Textbox(elem_id="agent-input", show_label=False, placeholder=t("agent_input"), lines=1,
                         max_lines=12, submit_btn=True)
    with gr.Row(elem_classes=["chat-actions"]):
        stop = gr.Button(t("stop"), size="sm", variant="stop", elem_id="agent-stop", icon=icon("stop"))
        clear = gr.Button(t("agent_clear"), size="sm", elem_id="agent-clear", icon=icon("trash"))
        new = gr.Button(t("agent_new"), size="sm", elem_id="agent-new", icon=icon("plus"))
    examples(AGENT_EXAMPLES, textbox, t("examples"), "agent-examples")
    with gr.Accordion(t("agent_tools"), open=True):
        with gr.Row():
            interpreter = gr.Checkbox(True, label=t("agent_interpreter"), elem_id="agent-interpreter")
            max_steps = gr.Slider(1, agent_task.MAX_STEPS, value=5, step=1, label=t("agent_max_steps"))
        names = services.tools.names() if services.tools else []
        tools = gr.CheckboxGroup(names, value=names, label=t("agent_plugins"), elem_id="agent-tools")
        files = gr.File(label=t("agent_files"), file_count="multiple", elem_id="agent-files",
                        file_types=[".csv", ".tsv", ".txt", ".json", ".xlsx", "image"])
        protections = gr.Markdown("", elem_id="agent-protections")
    with gr.Accordion(t("agent_prompts"), open=False):
        # The lesson's sidebar had these three; empty boxes keep the model's own (InternLM2's meta instruction).
        system_prompt = gr.Textbox("", label=t("agent_system_prompt"), lines=2, max_lines=10,
                                   placeholder=agent_task.META_PROMPT_CN, elem_id="agent-system-prompt")
        plugin_prompt = gr.Textbox("", label=t("agent_plugin_prompt"), lines=3, max_lines=10,
                                   placeholder=agent_task.PLUGIN_PROMPT_CN, elem_id="agent-plugin-prompt")
        interpreter_prompt = gr.Textbox("", label=t("agent_interpreter_prompt"), lines=3, max_lines=10,
                                        placeholder=agent_task.INTERPRETER_PROMPT, elem_id="agent-interpreter-prompt")
    with gr.Accordion(t("export"), open=False):
        with gr.Row():
            exports = {kind: gr.Button(t(f"chat_export_{kind}"), size="sm", elem_id=f"agent-export-{kind}")
                       for kind in export_kinds("conversation")}
        export_file = gr.File(show_label=False, interactive=False, elem_id="agent-export-file")
    return AgentTab(engine, session, chatbot, textbox, notice, panel, protections, tools, interpreter,
                    max_steps, files, system_prompt, plugin_prompt, interpreter_prompt, stop, clear, new, exports, export_file)


def _upload_note(names: list[str]) -> str:
    """How the model learns of the files: named in the message, as the lesson's demo did."""
    return "\n\n[Uploaded files, in the interpreter's current folder: " + ", ".join(names) + "]"


class _Handlers:
    """The tab's event handlers over one app's Services (their parameter names are the public API's)."""

    def __init__(self, services: Services, tab: AgentTab, pacer: FramePacer) -> None:
        self.services, self.tab, self.pacer = services, tab, pacer
        self.stops = StopSignals()
        self._lock = threading.Lock()
        self._protections: Optional[str] = None  # the same for every conversation: found once per app

    def panel(self) -> str:
        """The 'start a tool-calling model' panel, when the loaded model cannot call tools natively."""
        pool = self.services.engines
        if pool.state(self.tab.engine).state != "ready":
            return ""
        engine = pool.get(self.tab.engine)
        return "" if engine.tools else no_native_tools(pool.label(self.tab.engine))

    def protections(self) -> str:
        """Which sandbox protections this machine applies to the interpreter, or why it is refused."""
        with self._lock:
            if self._protections is None:
                self._protections = self._probe()
            return self._protections

    def _probe(self) -> str:
        pool = self.services.tools
        if pool is None:
            return ""
        try:
            probe = pool.interpreter(*PROBE)
            active, missing = probe.protections(), probe.missing()
        except StudioError as exc:  # SandboxUnavailable: the reason, not a crash
            return sandbox_refused(str(exc))
        finally:
            pool.forget(*PROBE)
        return sandbox_note(active, missing)

    def _frame(self, sess: ChatSession, box, notice: str, live: str = "", lang: str = "en") -> dict:
        tab = self.tab
        return {tab.chatbot: agent_messages(sess, live, lang), tab.textbox: box, tab.session: sess, tab.notice: notice,
                tab.files: None, tab.panel: self.panel()}

    def _attach(self, uid: str, sess: ChatSession, interpreter: bool, files) -> str:
        """Copy uploads into the conversation's interpreter folder; the note naming them to the model."""
        paths = [str(f) for f in (files or [])]
        if not paths:
            return ""
        if not interpreter:
            raise InputError("Uploaded files are read by the Python interpreter, which is off.",
                             "Turn on 数据分析 / Data analysis, or remove the files.", key="err_interpreter_off")
        interp = self.services.tools.interpreter(uid, sess.id)
        return _upload_note([interp.add_file(p, Path(p).name) for p in paths])

    @user_errors
    def on_send(self, text, sess, uid, tools, interpreter, max_steps, files, system_prompt, plugin_prompt,
                interpreter_prompt, request: gr.Request):
        options = agent_task.check_options(self.services, tools, interpreter, max_steps)
        if system_prompt:  # empty: the conversation keeps its own (at first, the model's default)
            sess.system_prompt = agent_task.validate_system_prompt(self.services, system_prompt)
        options = agent_task.with_prompts(self.services, options, plugin_prompt, interpreter_prompt)
        uid = user_of(uid, request)
        text = (text or "") + self._attach(uid, sess, bool(interpreter), files)
        with self.stops.run(run_key(request)) as cancel:
            events = agent_task.run(self.services, uid, sess, text, options, cancel)
            yield from self._stream(events, sess, page_lang(request))

    def _stream(self, events, sess: ChatSession, lang: str = "en"):
        notice, live, shown = "", "", 0.0
        with self.pacer.streaming():
            for ev in events:
                if isinstance(ev, Notice):
                    notice = notice_text(lang, ev)
                elif isinstance(ev, TextDelta):
                    if ev.finish_reason == "error":
                        events.close()
                        raise InputError(f"Generation failed: {ev.error}", "Try again; if it repeats, check the model.",
                                         key="err_generation_failed", values={"error": ev.error})
                    live += ev.text
                    if not ev.finish_reason and not self.pacer.due(shown, UI_FRAME_S):
                        continue
                else:  # a step: the text so far was its thought, now part of the step
                    live = ""
                shown = time.monotonic()
                yield self._frame(sess, "", notice, live, lang)
        yield self._frame(sess, "", notice, lang=lang)  # exactly what was stored

    def on_stop(self, request: gr.Request):
        """Stop this browser session's run (a running tool is killed)."""
        self.stops.stop(run_key(request))

    @user_errors
    def on_clear(self, sess, uid, request: gr.Request):
        agent_task.clear(self.services, user_of(uid, request), sess)
        return self._frame(sess, "", "", lang=page_lang(request))

    @user_errors
    def on_new(self, sess, uid, request: gr.Request):
        return self._frame(agent_task.new_session(self.services), "", "", lang=page_lang(request))

    def on_export(self, kind: str):
        """The handler that downloads the conversation, its steps included, as export `kind`."""
        @user_errors
        def export(sess, request: gr.Request):
            if not sess.messages:
                gr.Info(tr(page_lang(request), "notice_export_empty_agent"))
                return None
            result = EXPORTS.get(f"conversation_{kind}")(sess, self.services.engines.label(sess.engine))
            return str(self.services.files.export(result.filename, result.data))

        export.__name__ = f"on_agent_export_{kind}"
        return export

    @user_errors
    def on_resume(self, uid, request: gr.Request):
        """The user's last agent conversation (agent conversations have a store of their own), else a fresh one."""
        uid, store = user_of(uid, request), self.services.agent_store
        latest = store.list(uid, 1)
        sess = store.load(uid, latest[0].id) if latest else agent_task.new_session(self.services)
        return {**self._frame(sess, gr.skip(), "", lang=page_lang(request)), self.tab.protections: self.protections()}


def wire(services: Services, tab: AgentTab, user_id: gr.State, pacer: FramePacer) -> None:
    """Attach the tab's events (public: agent_send, agent_stop, agent_clear, agent_new, agent_resume,
    agent_export_<kind>)."""
    h = _Handlers(services, tab, pacer)
    # The agent shares its engine's queue with the other tabs, so they never fight over one model.
    model_queue = {"concurrency_id": f"engine:{tab.engine}",
                   "concurrency_limit": services.engines.concurrency(tab.engine)}
    outs = tab.outputs()
    h.stops.forget_on(tab.textbox.submit)
    tab.textbox.submit(h.on_send, [tab.textbox, tab.session, user_id, tab.tools, tab.interpreter, tab.max_steps,
                                   tab.files, tab.system_prompt, tab.plugin_prompt,
                                   tab.interpreter_prompt], outs, api_name="agent_send", **model_queue)
    # Stop runs outside the queue, or it would wait behind the very run it stops.
    tab.stop.click(h.on_stop, None, None, api_name="agent_stop", queue=False, show_progress="hidden")
    tab.clear.click(h.on_clear, [tab.session, user_id], outs, api_name="agent_clear")
    tab.chatbot.clear(h.on_clear, [tab.session, user_id], outs, api_visibility="private")
    tab.new.click(h.on_new, [tab.session, user_id], outs, api_name="agent_new")
    for kind, button in tab.exports.items():
        button.click(h.on_export(kind), [tab.session], tab.export_file, api_name=f"agent_export_{kind}")
    # /resume sets the user; then the page shows that user's last agent conversation (API clients, which do
    # not run the page's change events, call /agent_resume after /resume).
    user_id.change(h.on_resume, [user_id], [*outs, tab.protections], api_name="agent_resume")
