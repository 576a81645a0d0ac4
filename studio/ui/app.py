"""build_app: the desktop-style Blocks shell (sidebar, header, tabs) over Services."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import gradio as gr
from starlette.middleware import Middleware

from studio.api import api_routes
from studio.api.auth import LaunchInfo
from studio.core.article import ArticleSession
from studio.core.session import ChatSession
from studio.services import Services
from studio.tasks import vision as vision_task
from studio.ui.pacing import FramePacer
from studio.ui import article_events, article_tab, chat_tab, sidebar, system_tab, vision_tab
from studio.ui.early_script import EarlyScriptMiddleware, lang_script
from studio.ui.convert import chatbot_messages, status_markdown
from studio.ui.i18n import EN, build_i18n
from studio.ui.validate import CheckedBlocks

ASSETS = Path(__file__).resolve().parents[2] / "assets"


THEME_ON_LOAD_JS = """() => {
  const t = localStorage.getItem('puyu-theme');
  if (t) document.body.classList.toggle('dark', t === 'dark');
}"""


@dataclass(frozen=True)
class App:
    """The Blocks app and the keyword arguments launch() needs for it."""

    blocks: gr.Blocks
    launch_kwargs: dict


def _status(services: Services) -> str:
    """One header line per configured model."""
    pool = services.engines
    return "  \n".join(status_markdown(pool.label(n), pool.state(n)) for n in pool.names())


def build_app(services: Services, lang: Optional[str] = None) -> App:
    """Build the UI over `services`; nothing is loaded or launched here."""
    i18n = build_i18n()
    cfg = services.config
    with CheckedBlocks(title=cfg.ui.title, fill_height=True, delete_cache=(3600, 86400)) as demo:
        user_id = gr.State("")  # set by /resume; see chat_tab.user_of for clients that skip it
        session = gr.State(ChatSession())
        drafts_ui: dict = {}
        bar = sidebar.build(i18n, cfg.ui.title, f"/gradio_api/file={ASSETS / 'logo.svg'}",
                            extra=lambda: drafts_ui.update(article_tab.build_drafts(i18n)))
        with gr.Row(elem_id="header"):
            status = gr.Markdown(_status(services), elem_id="model-status")
        timer = gr.Timer(1.0)
        vision_session = gr.State(vision_task.new_session(services))
        with gr.Tabs():
            with gr.Tab(i18n("tab_chat"), id="chat"):
                tab = chat_tab.build(i18n)
            with gr.Tab(i18n("tab_vision"), id="vision"):
                vtab = vision_tab.build(i18n, services)
            with gr.Tab(i18n("tab_article"), id="article") as article_tab_item:
                atab = article_tab.build(i18n, drafts_ui)
            with gr.Tab(i18n("tab_system"), id="system") as system_tab_item:
                sys_ui = system_tab.build(i18n, services)

        def tick():
            pool = services.engines
            done = all(pool.state(n).state in ("ready", "failed") for n in pool.names())
            return _status(services), gr.Timer(active=not done)

        timer.tick(tick, None, [status, timer], api_visibility="private", queue=False)
        demo.load(tick, None, [status, timer], api_name="status", queue=False)

        session_outputs = [tab.chatbot, tab.notice, tab.system_prompt, *tab.settings]

        def session_values(sess):
            return [chatbot_messages(sess), "", *chat_tab.settings_values(sess)]

        after_save = sidebar.wire(demo, services, bar, session, user_id, session_outputs, session_values)
        pacer = FramePacer()  # one per app: all streams together stay within its update budget
        chat_tab.wire(services, tab, session, user_id, after_save, pacer)
        vision_tab.wire(services, vtab, vision_session, pacer)
        article_session = gr.State(ArticleSession())
        refresh_drafts = article_events.wire(services, atab, article_session, user_id,
                                             EN["article_placeholder"], pacer)
        article_tab_item.select(*refresh_drafts, api_name="article_drafts")
        system_tab.wire(services, sys_ui, system_tab_item)
        # The drafts list sits in the sidebar: fill it once /resume has told us who the user is.
        user_id.change(*refresh_drafts, api_visibility="private")
    demo.queue(max_size=cfg.ui.queue_max_size, default_concurrency_limit=8)
    launch_kwargs = dict(
        i18n=i18n,
        theme=gr.themes.Soft(primary_hue="blue", secondary_hue="sky"),
        css_paths=[ASSETS / "theme.css"],
        app_kwargs={"middleware": [Middleware(EarlyScriptMiddleware, script=lang_script(lang or cfg.ui.lang))],
                    # /v1: the OpenAI-compatible API; auth and host are read from launch() per request.
                    "routes": api_routes(services, lambda: LaunchInfo(demo.auth, getattr(demo, "server_name", None),
                                                                      bool(getattr(demo, "share", False))))},
        js=THEME_ON_LOAD_JS,
        # Thumbnails and downloads are written to the studio's private folder; Gradio copies them from there.
        allowed_paths=[str(ASSETS), str(services.files.root)],
        max_file_size=cfg.ui.max_file_size,
        show_error=False,
        enable_monitoring=False,
        footer_links=["api"],
    )
    return App(demo, launch_kwargs)
