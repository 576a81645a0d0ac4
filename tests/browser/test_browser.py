"""The studio in a real browser (Playwright + Debian's chromium): send, stream, toggles, safety."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.browser.helpers import start_new_chat
from tests.support.apps import EMBEDDED_CONFIG, REPO, running_app, write_config
from tests.support.waits import wait_in_page

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("PUYU_TEST_ARTIFACTS", REPO / "test-artifacts"))
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1360, "height": 900}, locale="en-US")
    pg = context.new_page()
    dialogs = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs
    yield pg
    context.close()


def shot(pg, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    pg.screenshot(path=str(path), full_page=True)
    return path


def send(pg, text: str) -> None:
    box = pg.locator("#chat-input textarea")
    box.fill(text)
    box.press("Enter")


def test_real_model_streams_a_reply_in_the_browser(page, tmp_path, embedded_cache_dir):
    with running_app(EMBEDDED_CONFIG, tmp_path / "data", cache_dir=embedded_cache_dir) as app:
        page.goto(app.url)
        wait_in_page(page, page.locator("#model-status .status-ready"), "the model to be ready", visible=True)
        send(page, "Write a short poem about the moon.")
        bot = page.get_by_test_id("bot").last
        wait_in_page(page, bot, "the reply to start", empty=False)
        first = len(bot.inner_text())
        page.wait_for_timeout(1500)
        later = len(bot.inner_text())
        shot(page, "chat-streaming.png")
        assert later > first  # still growing: streamed, not delivered at once
        page.locator("#stop-btn").click()
        wait_in_page(page, page.locator("#conversations"), "the conversation in the sidebar", text="Write a short poem")
        stopped = bot.inner_text()
        page.wait_for_timeout(1500)
        assert bot.inner_text() == stopped  # Stop really stopped the stream
        shot(page, "chat-stopped.png")
        page.reload()  # the per-browser key brings the conversation back
        wait_in_page(page, page.get_by_test_id("user"), "the message after a reload", text="Write a short poem")


@pytest.fixture(scope="module")
def html_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    with running_app(write_config(tmp, model_path="script:html"), tmp / "data") as app:
        yield app


def test_model_html_never_runs(page, html_app):
    page.goto(html_app.url)
    send(page, "show me html")
    bot = page.get_by_test_id("bot").last
    wait_in_page(page, bot, "the scripted reply", text="bold")
    page.wait_for_timeout(500)
    assert page.dialogs == []
    assert page.evaluate("window.__xss") is None
    assert page.locator("[data-testid=bot] [onerror]").count() == 0
    assert page.locator("[data-testid=bot] script").count() == 0
    assert page.locator("[data-testid=bot] a[href^='javascript']").count() == 0


def test_enter_sends_shift_enter_newline_and_stop_is_harmless(page, html_app):
    page.goto(html_app.url)
    wait_in_page(page, page.locator("#model-status .status-ready"), "the model to be ready", visible=True)
    start_new_chat(page)
    box = page.locator("#chat-input textarea")
    box.fill("line one")
    box.press("Shift+Enter")
    box.type("line two")
    assert box.input_value() == "line one\nline two"
    assert page.get_by_test_id("user").count() == 0
    page.locator("#stop-btn").click()  # nothing running: no error
    page.locator("#stop-btn").click()
    box.press("Enter")
    wait_in_page(page, page.get_by_test_id("user").last, "the two-line message", text="line two")
    wait_in_page(page, page.get_by_test_id("bot").last, "the scripted reply", text="bold")


def test_dark_mode_and_chinese_ui_persist(page, html_app):
    page.goto(html_app.url)
    wait_in_page(page, page.locator("#new-chat"), "the English UI", text="New conversation")
    page.locator("#theme-toggle").click()
    assert page.evaluate("document.body.classList.contains('dark')")
    page.locator("#lang-toggle").click()
    page.wait_for_load_state()
    wait_in_page(page, page.locator("#new-chat"), "the Chinese UI", text="新对话")
    assert page.evaluate("document.body.classList.contains('dark')")
    shot(page, "dark-zh.png")
