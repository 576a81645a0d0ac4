"""The chat in a real browser: the generating line, Escape stops, each reply's stats, inline math beside
prices, clean copies, and Parameters/Export in view on a 1366x768 screen."""

from __future__ import annotations

import pytest

from studio.tasks.users import local_user
from tests.browser.helpers import start_new_chat
from tests.browser.test_browser import browser, send, shot  # noqa: F401  (fixtures)
from tests.browser.test_stop_browser import ERROR_BADGE, TOAST, stored
from tests.e2e.helpers import wait_for
from tests.support.apps import running_app, write_config
from tests.support.waits import wait_in_page, wait_until

pytestmark = pytest.mark.browser
RUNNING = "#chat-notice .chat-generating"


@pytest.fixture
def laptop(browser):  # noqa: F811
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="en-US")
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def slow_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stats-slow")
    with running_app(write_config(tmp, model_path="script:slow"), tmp / "data") as app:
        yield app


@pytest.fixture(scope="module")
def echo_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stats-echo")
    with running_app(write_config(tmp), tmp / "data") as app:
        yield app


def last_reply(app):
    """The stored last message of the most recent conversation."""
    from sqlite3 import connect

    with connect(app.services.store.db_path) as conn:
        user, conv = conn.execute("SELECT user_id, id FROM conversations ORDER BY updated DESC LIMIT 1").fetchone()
    return app.services.store.load(user, conv).messages[-1]


def test_generating_line_escape_stops_and_the_stats_show_the_stored_counts(laptop, slow_app):
    pg = laptop
    pg.goto(slow_app.url)
    start_new_chat(pg)
    wait_in_page(pg, pg.locator("#model-status .status-ready"), "the model to be ready", visible=True)
    pg.keyboard.press("Escape")  # nothing runs: harmless
    send(pg, "tell me a long story")
    wait_in_page(pg, pg.locator(RUNNING), "the generating line to count tokens", text="tokens")
    stop_bg = pg.eval_on_selector("#stop-btn", "b => getComputedStyle(b).backgroundColor")
    assert stop_bg == "rgb(220, 38, 38)"  # Stop is emphasised while the reply runs
    shot(pg, "chat-generating.png")
    pg.locator("#chat-input textarea").press("Escape")
    wait_for(lambda: pg.locator(RUNNING).count() == 0, "the generating line to go after Escape")
    stats = pg.locator("#chatbot .reply-stats").last
    wait_in_page(pg, stats, "the reply's stats line", text="stopped")
    reply = wait_for(lambda: (m := last_reply(slow_app)).meta and m.meta["stats"]["finish_reason"] and m,
                     "the stopped reply's stats in the store")
    saved = reply.meta["stats"]
    assert saved["finish_reason"] == "cancelled" and 0 < saved["completion_tokens"] < 200  # stopped early
    assert stats.inner_text().startswith(f"{saved['completion_tokens']} tokens · {saved['first_token_s']:.2f} s")
    words = len(stored(slow_app)[-1][1].split())
    pg.wait_for_timeout(1000)
    assert len(stored(slow_app)[-1][1].split()) == words  # it really stopped
    assert pg.locator("#stop-btn").evaluate("b => getComputedStyle(b).backgroundColor") != stop_bg
    assert pg.locator(ERROR_BADGE).count() == 0 and pg.locator(TOAST).count() == 0
    shot(pg, "chat-stats-stopped.png")


def test_inline_math_renders_and_prices_stay_text(laptop, echo_app):
    pg = laptop
    pg.goto(echo_app.url)
    start_new_chat(pg)
    send(pg, r"Costs $5 and $10, while $x^2$ and \(y_1\) are math.")
    bot = pg.get_by_test_id("bot").last
    wait_in_page(pg, bot, "the echoed reply with its stats", text="tok/s")
    assert bot.locator(".katex").count() == 2  # x^2 and y_1, not "5 and "
    assert "Costs $5 and $10, while" in bot.inner_text()
    assert bot.locator(".katex annotation").all_text_contents() == ["x^2", "y_1"]


def test_copy_gives_the_reply_without_its_stats_line(laptop, echo_app):
    pg = laptop
    pg.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=echo_app.url.rstrip("/"))
    pg.goto(echo_app.url)
    start_new_chat(pg)
    send(pg, "copy $5 **bold**")
    bot = pg.get_by_test_id("bot").last
    wait_in_page(pg, bot, "the reply's stats line", text="tok/s")
    pg.locator("#chatbot button[aria-label='Copy message']").last.click()
    copied = wait_for(lambda: pg.evaluate("navigator.clipboard.readText()"), "the copied text")
    assert copied == "echo: copy $5 **bold**"


def test_parameters_and_export_are_in_view_on_a_laptop_screen(laptop, echo_app):
    pg = laptop
    pg.goto(echo_app.url)
    start_new_chat(pg)
    wait_in_page(pg, pg.locator("#parameters-panel"), "the parameters", visible=True)
    for panel in ("#parameters-panel", "#export-panel", "#chat-input textarea"):
        box = pg.locator(panel).bounding_box()
        assert box and box["y"] + 30 < 768, (panel, box)  # above the fold
    pg.get_by_text("Parameters").click()  # opened, its first controls are in view too
    wait_in_page(pg, pg.locator("#system-prompt textarea"), "the system prompt box", visible=True)
    assert pg.locator("#system-prompt textarea").bounding_box()["y"] + 30 < 768
    assert pg.locator("#chat-input textarea").bounding_box()["y"] + 30 < 768  # the transcript keeps its place
    shot(pg, "chat-layout-1366x768.png")


def test_a_reloaded_chinese_page_shows_the_stats_in_chinese(laptop, echo_app):
    pg = laptop
    pg.goto(echo_app.url)
    start_new_chat(pg)
    pg.evaluate("localStorage.setItem('puyu-lang', 'zh')")
    # Forget the key, so start_new_chat waits for this load's /resume (which sets it again): a click on New
    # before it would be undone when it reopens the latest conversation.
    pg.evaluate("localStorage.removeItem('puyu-user')")
    pg.reload()
    start_new_chat(pg)
    send(pg, "你好")
    stats = pg.locator("#chatbot .reply-stats").last
    wait_in_page(pg, stats, "the stats line in Chinese", text="个 token")
    store, user = echo_app.services.store, local_user()

    def remembered_is_this_chat() -> bool:  # not an id kept from before this chat's save
        conv = pg.evaluate("localStorage.getItem('puyu-conv')")
        return bool(conv) and any(c.id == conv and c.title == "你好" for c in store.list(user))

    wait_until(remembered_is_this_chat, "this conversation remembered as the open one")
    pg.reload()  # the conversation comes back through the sidebar's /resume
    wait_in_page(pg, pg.get_by_test_id("user"), "the message after a reload", text="你好")
    wait_in_page(pg, pg.locator("#chatbot .reply-stats").last, "the stats line in Chinese again", text="首 token")
    assert "tokens" not in pg.locator("#chatbot").inner_text()
