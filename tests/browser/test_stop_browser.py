"""Stop is calm in a real browser: no error badge or toast, the message kept, the same transcript on reload."""

from __future__ import annotations

import random
import re
import sqlite3
import time

import pytest

from tests.browser.helpers import start_new_chat
from tests.browser.test_browser import browser, page, send, shot  # noqa: F401  (fixtures)
from tests.e2e.helpers import wait_for
from tests.support.apps import EMBEDDED_CONFIG, running_app, write_config

pytestmark = pytest.mark.browser
# Gradio 6 marks a failed event with a red "Error" badge (span.error in each output's status
# tracker) and shows error toasts as .toast-body; neither may appear after a Stop.
ERROR_BADGE, TOAST = ".error", ".toast-body"


# Read in one go in the page (bubbles come and go while a reply streams); a reply's stats line left out.
_TRANSCRIPT_JS = """() => [...document.querySelectorAll('[data-testid=user], [data-testid=bot]')].map(el => {
  const stats = el.querySelector('.reply-stats');
  let text = el.innerText.trim();
  if (stats && text.endsWith(stats.innerText)) text = text.slice(0, -stats.innerText.length).trim();
  return [el.dataset.testid === 'user' ? 'user' : 'assistant', text];
})"""


def transcript(pg) -> list[tuple[str, str]]:
    """(role, text) of every bubble, in order, as the page shows them (a reply's stats line left out)."""
    return [tuple(row) for row in pg.evaluate(_TRANSCRIPT_JS)]


def stored(app) -> list[tuple[str, str]]:
    """(role, text) of the most recently updated conversation in the store."""
    with sqlite3.connect(app.services.store.db_path) as conn:
        row = conn.execute("SELECT user_id, id FROM conversations ORDER BY updated DESC LIMIT 1").fetchone()
    if row is None:
        return []
    return [(m.role, m.text) for m in app.services.store.load(*row).messages]


def letters(turns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The turns with only their letters: Markdown rendering drops list numbers, `**`, `#` …"""
    return [(role, re.sub(r"[\W\d_]+", "", text)) for role, text in turns]


def settled(pg, app) -> list[tuple[str, str]]:
    """Wait until the page shows what is stored and the reply has stopped; returns what it shows."""
    def same():
        shown = transcript(pg)
        return shown if shown and letters(shown) == letters(stored(app)) else None

    try:
        return wait_for(same, "the page to settle", step=0.3)
    except AssertionError:
        raise AssertionError(f"the page shows {transcript(pg)} but the store has {stored(app)}") from None


def assert_calm(pg) -> None:
    """No error badge and no toast, watched for a moment after the stream ended."""
    for _ in range(5):  # the badge on main came a little after the stream ended: look a few times
        assert pg.locator(ERROR_BADGE).count() == 0, "an error badge appeared after Stop"
        assert pg.locator(TOAST).count() == 0, pg.locator(TOAST).all_inner_texts()
        pg.wait_for_timeout(300)


@pytest.fixture(scope="module")
def slow_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stop-slow")
    with running_app(write_config(tmp, model_path="script:slow"), tmp / "data") as app:
        yield app


def test_stop_at_random_moments_never_shows_an_error(page, slow_app):  # noqa: F811
    page.goto(slow_app.url)
    page.wait_for_selector("#chat-input textarea")
    wait_for(lambda: page.locator("#model-status .status-ready").first.is_visible(), "the model to be ready")
    rng = random.Random(12)
    delays = [0.3] + [rng.uniform(0.1, 3.0) for _ in range(9)]  # the first: Stop 0.3 s after Enter
    for i, delay in enumerate(delays):
        if i % 2 == 0:
            send(page, f"message {i}")
        else:
            page.locator("#regen-btn").click()
        time.sleep(delay)
        page.locator("#stop-btn").click()
        shown = settled(page, slow_app)
        assert_calm(page)
        if i % 2 == 0:
            assert ("user", f"message {i}") in shown, f"message {i} lost after Stop at {delay:.1f} s"
        assert all(text for role, text in shown if role == "assistant"), "an empty reply bubble"
        assert len(shown) < 2 or len(shown[-1][1].split()) < 200  # Stop really stopped the reply
    shot(page, "chat-stop-calm.png")
    before = transcript(page)
    page.reload()
    wait_for(lambda: transcript(page) == before, "the transcript to match after reload", step=0.3)


def test_stop_on_the_real_model_is_calm(page, tmp_path, embedded_cache_dir):  # noqa: F811
    with running_app(EMBEDDED_CONFIG, tmp_path / "data", cache_dir=embedded_cache_dir) as app:
        page.goto(app.url)
        wait_for(lambda: page.locator("#model-status .status-ready").first.is_visible(), "the real model to be ready")
        rng = random.Random(3)
        for i in range(3):
            if i == 1:
                page.locator("#regen-btn").click()
            else:
                send(page, "请写一个 300 字的小故事")
            bot = page.get_by_test_id("bot")
            wait_for(lambda: bot.count() > 0 and bot.last.inner_text().strip(), "the real reply to start")
            time.sleep(rng.uniform(0.2, 4.0))
            page.locator("#stop-btn").click()
            settled(page, app)
            assert_calm(page)
        shot(page, "chat-stop-calm-real.png")
        before = transcript(page)
        page.reload()
        wait_for(lambda: transcript(page) == before, "the transcript to match after reload", step=0.3)


def test_stop_while_waiting_in_the_queue_keeps_the_message_and_no_reply(browser, page, slow_app):  # noqa: F811
    other = browser.new_context(viewport={"width": 1360, "height": 900}, locale="en-US")
    try:
        busy = other.new_page()  # another user: the one local model answers one reply at a time
        for pg in (busy, page):
            pg.goto(slow_app.url)
            pg.wait_for_selector("#chat-input textarea")
            start_new_chat(pg)
        send(busy, "a long answer for someone else")
        wait_for(lambda: busy.get_by_test_id("bot").count() > 0, "the queued reply to start")
        send(page, "my turn is queued")
        page.wait_for_timeout(1000)
        page.locator("#stop-btn").click()  # still waiting for the other reply (200 slow words) to end
        busy.locator("#stop-btn").click()
        wait_for(lambda: transcript(page) == [("user", "my turn is queued")]
                 and page.locator(".pending").count() == 0, "the queued message to stay, with no reply", step=0.3)
        page.wait_for_timeout(1500)  # had the Stop been lost, words would arrive by now
        assert transcript(page) == [("user", "my turn is queued")]
        for pg in (page, busy):
            assert_calm(pg)
        shot(page, "chat-stop-queued.png")
    finally:
        other.close()
