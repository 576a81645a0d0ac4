"""Versions in a real browser: edit an earlier message, regenerate, flip with ‹ ›, and a reload shows the same."""

from __future__ import annotations

import sqlite3

import pytest

from tests.browser.test_browser import browser, page, send, shot  # noqa: F401  (fixtures)
from tests.support.apps import running_app, write_config
from tests.support.waits import wait_in_page, wait_until

pytestmark = pytest.mark.browser


def bubbles(pg) -> list[str]:
    """The text of every message bubble, in order."""
    # One read of the whole list: the transcript may change between a count and a read of each bubble.
    # Without each reply's stats line (tests/browser/test_chat_stats_browser.py checks those).
    texts = pg.evaluate("() => [...document.querySelectorAll('[data-testid=user], [data-testid=bot]')]"
                        ".map(e => { const c = e.cloneNode(true); c.querySelectorAll('.reply-stats')"
                        ".forEach(s => s.remove()); return c.innerText; })")
    return [" ".join(t.split()) for t in texts]


def shows(pg, expected: list[str], what: str) -> None:
    """Wait until the transcript is exactly `expected`."""
    wait_until(lambda: bubbles(pg) == expected, what, progress=lambda: bubbles(pg), step=0.3)


def bar(pg) -> str:
    return " ".join(pg.locator("#versions-bar").inner_text().split())


def edit_message(pg, nth: int, text: str) -> str:
    """Edit the nth user message with the Chatbot's own Edit button; returns what the edit box first held."""
    user = pg.get_by_test_id("user").nth(nth)
    user.hover()
    pg.locator("#chatbot button[aria-label=Edit]").nth(nth).click()
    box = pg.locator("#chatbot textarea").first
    before = box.input_value()
    box.fill(text)
    pg.locator("#chatbot button[aria-label=Submit]").first.click()
    return before


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("versions-browser")
    with running_app(write_config(tmp), tmp / "data") as running:
        yield running


def test_edit_regenerate_flip_and_reload(page, app):  # noqa: F811
    page.goto(app.url)
    wait_in_page(page, page.locator("#model-status .status-ready"), "the model to be ready", visible=True)
    assert not page.locator("#versions-bar").is_visible()  # nothing to switch yet
    for text in ("first", "second"):
        send(page, text)
        wait_in_page(page, page.get_by_test_id("bot").last, f"the reply to {text}", text=f"echo: {text}")
    page.locator("#stop-btn").click()  # while nothing runs: it must not stop the edit's reply below
    edit_message(page, 0, "first, edited")
    shows(page, ["first, edited ‹ 2/2 ›", "echo: first, edited"], "the edited turn and its new reply")
    wait_until(lambda: bar(page) == "‹ Message 1 · version 2 of 2 ›", "the bar for message 1", progress=lambda: bar(page))
    page.locator("#regen-btn").click()
    shows(page, ["first, edited ‹ 2/2 ›", "echo: first, edited ‹ 2/2 ›"], "the regenerated reply, version 2")
    wait_until(lambda: "Message 2 · version 2 of 2" in bar(page), "the bar for the reply", progress=lambda: bar(page))
    page.get_by_test_id("user").first.click()  # a click picks the message whose versions the bar switches
    wait_until(lambda: "Message 1 · version 2 of 2" in bar(page), "the bar for message 1 again",
               progress=lambda: bar(page))
    shot(page, "versions-edited.png")
    page.locator("#versions-prev").click()
    shows(page, ["first ‹ 1/2 ›", "echo: first", "second", "echo: second"], "version 1: the original branch")
    shot(page, "versions-original.png")
    page.locator("#versions-next").click()
    shows(page, ["first, edited ‹ 2/2 ›", "echo: first, edited ‹ 2/2 ›"], "version 2 with its own versions")
    # An edit box holds the message without its ‹ n/m › mark, and the mark never enters the message.
    assert edit_message(page, 0, "first, third try").strip() == "first, edited"
    shows(page, ["first, third try ‹ 3/3 ›", "echo: first, third try"], "the third version")
    before = bubbles(page)
    page.reload()
    shows(page, before, "the same transcript after a reload")
    wait_until(lambda: "version 3 of 3" in bar(page), "the bar after a reload", progress=lambda: bar(page))
    page.locator("#versions-prev").click()
    shows(page, ["first, edited ‹ 2/3 ›", "echo: first, edited ‹ 2/2 ›"], "version 2 after a reload")
    shot(page, "versions-after-reload.png")
    before = bubbles(page)
    edit_message(page, 0, "   ")  # an emptied message is refused, and the page shows the transcript as stored
    wait_in_page(page, page.locator(".toast-body"), "the refusal of an empty message", text="empty")
    shows(page, before, "the transcript as it was")


def test_editing_and_switching_while_a_reply_streams_are_refused(page, tmp_path):  # noqa: F811
    with running_app(write_config(tmp_path, model_path="script:slow"), tmp_path / "data") as slow:
        page.goto(slow.url)
        wait_in_page(page, page.locator("#model-status .status-ready"), "the model to be ready", visible=True)
        send(page, "a long one")
        wait_in_page(page, page.get_by_test_id("bot").last, "the reply to stream", text="w3")
        page.locator("#stop-btn").click()
        wait_until(lambda: not page.locator("#stop-btn").is_disabled() and page.locator("#regen-btn").is_enabled(),
                   "the page to be idle")
        page.locator("#regen-btn").click()  # version 2 of the reply
        wait_until(lambda: len(bubbles(page)) == 2 and "‹ 2/2 ›" in bubbles(page)[1] and "w3" in bubbles(page)[1],
                   "version 2 of the reply to stream", progress=lambda: bubbles(page))
        page.locator("#stop-btn").click()
        wait_in_page(page, page.locator("#versions-bar"), "the bar", text="version 2 of 2")
        send(page, "and another")
        wait_until(lambda: len(bubbles(page)) == 4 and "w3" in bubbles(page)[-1], "the next reply to stream",
                   progress=lambda: bubbles(page))
        page.get_by_test_id("user").first.hover()
        assert page.locator("#chatbot button[aria-label=Edit]").first.is_disabled()  # the Chatbot's own guard
        page.locator("#versions-prev").click()
        wait_in_page(page, page.locator(".toast-body"), "the refusal", text="still being written")
        shot(page, "versions-refused-while-streaming.png")
        page.locator("#stop-btn").click()
        (user,) = stored_users(slow)
        def saved():
            return slow.services.store.load(user, slow.services.store.list(user)[0].id)

        # Stop's final save: the reply complete as it stands (checkpoints mark it partial until then).
        wait_until(lambda: len(saved().messages) == 4 and not saved().messages[-1].partial, "the stopped reply stored",
                   progress=lambda: saved().messages[-1].text)
        assert saved().version_of(1) == (2, 2)  # the switch never happened
        assert saved().messages[1].text.startswith("w0") and saved().messages[2].text == "and another"


def stored_users(app) -> list[str]:
    """Every user with a stored conversation."""
    with sqlite3.connect(app.services.store.db_path) as conn:
        return [r[0] for r in conn.execute("SELECT DISTINCT user_id FROM conversations")]
