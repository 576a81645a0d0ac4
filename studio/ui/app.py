"""build_app: the desktop-style Blocks shell (sidebar, header, tabs) over Services."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import gradio as gr
from starlette.middleware import Middleware

from studio.api import api_routes
from studio.api.auth import LaunchInfo
from studio.services import Services
from studio.tasks import agent as agent_task
from studio.tasks import article_plan
from studio.tasks import vision as vision_task
from studio.ui.pacing import FramePacer
from studio.ui import agent_tab, article_events, article_tab, chat_page, chat_tab, sidebar, system_tab, vision_tab
from studio.ui import models_tab
from studio.ui.early_script import EarlyScriptMiddleware, lang_script
from studio.ui.convert import status_markdown
from studio.ui.i18n import build_i18n, in_both, page_lang
from studio.ui.validate import CheckedBlocks

ASSETS = Path(__file__).resolve().parents[2] / "assets"
CHAT_ENGINE = "chat"  # the engine the chat and article tabs talk to (configs name it so)


THEME_ON_LOAD_JS = """() => {
  const t = localStorage.getItem('puyu-theme');
  if (t) document.body.classList.toggle('dark', t === 'dark');
}"""
ON_LOAD_JS = f"() => {{ ({THEME_ON_LOAD_JS})(); ({chat_page.CHAT_JS})(); }}"  # launch() takes one function


@dataclass(frozen=True)
class App:
    """The Blocks app and the keyword arguments launch() needs for it."""

    blocks: gr.Blocks
    launch_kwargs: dict


def _status(services: Services, lang: str = "en") -> str:
    """One header line per configured model, in `lang`."""
    pool = services.engines
    return "  \n".join(status_markdown(pool.label(n), pool.state(n), lang) for n in pool.names())


def _status_tick(services: Services, status: gr.Markdown, timer: gr.Timer):
    """The header's status line, and the timer kept running until every model is ready or has failed."""
    def tick(request: gr.Request):
        pool = services.engines
        done = all(pool.state(n).state in ("ready", "failed") for n in pool.names())
        return {status: _status(services, page_lang(request)), timer: gr.Timer(active=not done)}

    return tick


def _wire_status(services: Services, demo: gr.Blocks, status: gr.Markdown, timer: gr.Timer,
                 chat: chat_tab.ChatTab) -> None:
    """The header's model status: on load (public /status) and every second while a model loads."""
    tick = _status_tick(services, status, timer)

    def tick_and_prompt(sess, request: gr.Request):
        # The chat's system prompt box shows the model's default as soon as loading makes it known.
        return {**tick(request), **chat_tab.show_default_prompt(services, chat, sess)}

    timer.tick(tick_and_prompt, [chat.session], [status, timer, chat.session, chat.settings.system_prompt],
               api_visibility="private", queue=False)
    demo.load(tick, None, [status, timer], api_name="status", queue=False)


def skip_matplotlib_probe() -> None:
    """Make `import matplotlib` fail at once where it is not installed.

    Gradio wraps every event call, each update of a streaming reply included, in `import matplotlib` (to
    pin its backend); a failed import is not remembered, so each one searched sys.path again — about a
    tenth of the server's time with 8 users streaming. A None in sys.modules is Python's own marker for
    "not importable"; where matplotlib is installed nothing changes."""
    if "matplotlib" not in sys.modules and importlib.util.find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None


def build_app(services: Services, lang: Optional[str] = None) -> App:
    """Build the UI over `services`; nothing is loaded or launched here."""
    skip_matplotlib_probe()
    i18n = build_i18n()
    cfg = services.config
    # Which engine each tab talks to is decided here, once.
    chat_engine, vision_engine = CHAT_ENGINE, vision_task.engine_name(services)
    agent_engine = agent_task.engine_name(services)
    with CheckedBlocks(title=cfg.ui.title, fill_height=True, delete_cache=(3600, 86400)) as demo:
        user_id = gr.State("")  # set by /resume; see chat_tab.user_of for clients that skip it
        bar = sidebar.build(i18n, cfg.ui.title, f"/gradio_api/file={ASSETS / 'logo.svg'}",
                            extra=article_tab.build_drafts)
        with gr.Row(elem_id="header"):
            # The first value is made before any page's language is known: both, one shown by CSS (html[lang]).
            status = gr.Markdown(in_both(lambda lang: _status(services, lang), block=False), elem_id="model-status")
        timer = gr.Timer(1.0)
        with gr.Tabs():
            with gr.Tab(i18n("tab_chat"), id="chat"):
                tab = chat_tab.build(i18n, chat_engine)
            with gr.Tab(i18n("tab_vision"), id="vision") as vision_tab_item:
                vtab = vision_tab.build(i18n, services, vision_engine)
            with gr.Tab(i18n("tab_article"), id="article") as article_tab_item:
                atab = article_tab.build(i18n, bar.extra, chat_engine, article_plan.defaults(services, chat_engine),
                                         article_plan.sees_images(services, chat_engine))
            with gr.Tab(i18n("tab_agent"), id="agent"):
                agtab = agent_tab.build(i18n, services, agent_engine)
            with gr.Tab(i18n("tab_models"), id="models") as models_tab_item:
                models_ui = models_tab.build(i18n, services)
            with gr.Tab(i18n("tab_system"), id="system") as system_tab_item:
                sys_ui = system_tab.build(i18n, services)
        _wire_status(services, demo, status, timer, tab)
        after_save = sidebar.wire(demo, services, bar, tab, user_id)
        pacer = FramePacer()  # one per app: all streams together stay within its update budget
        chat_tab.wire(services, tab, user_id, after_save, pacer)
        vision_tab.wire(services, vtab, pacer, vision_tab_item)
        agent_tab.wire(services, agtab, user_id, pacer)
        refresh_drafts = article_events.wire(services, atab, user_id, pacer)
        article_tab_item.select(*refresh_drafts, api_name="article_drafts")
        system_tab.wire(services, sys_ui, system_tab_item)
        # A model loaded from the Models tab: the header polls its progress again until it is ready.
        models_tab.wire(services, models_ui, models_tab_item).success(lambda: gr.Timer(active=True), None, timer,
                                                                       api_visibility="private", queue=False)
        # The drafts list sits in the sidebar: fill it once /resume has told us who the user is.
        user_id.change(*refresh_drafts, api_visibility="private")
    demo.queue(max_size=cfg.ui.queue_max_size, default_concurrency_limit=8)
    return App(demo, _launch_kwargs(services, demo, i18n, lang))


def _launch_kwargs(services: Services, demo: gr.Blocks, i18n: gr.I18n, lang: Optional[str]) -> dict:
    """What launch() needs for this app: theme, early script, the /v1 routes, allowed paths, limits."""
    cfg = services.config
    return dict(
        i18n=i18n,
        theme=gr.themes.Soft(primary_hue="blue", secondary_hue="sky"),
        css_paths=[ASSETS / "theme.css"],
        app_kwargs={"middleware": [Middleware(EarlyScriptMiddleware, script=lang_script(lang or cfg.ui.lang))],
                    # /v1: the OpenAI-compatible API; auth and host are read from launch() per request.
                    "routes": api_routes(services, lambda: LaunchInfo(demo.auth, getattr(demo, "server_name", None),
                                                                      bool(getattr(demo, "share", False))))},
        js=ON_LOAD_JS,
        # Thumbnails and downloads are written to the studio's private folder; Gradio copies them from there.
        allowed_paths=[str(ASSETS), str(services.files.root), str(services.tools.figures_root)],
        max_file_size=cfg.ui.max_file_size,
        show_error=False,
        enable_monitoring=False,
        footer_links=["api"],
        # Gradio's own "is localhost reachable" probe gives up after one 3-second HEAD request, which
        # a busy machine can miss while it renders the page; the server is up once launch() returns.
        _frontend=False,
    )
