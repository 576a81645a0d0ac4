"""Stop is calm in the image and article tabs too: no error badge or toast, the answer or the article
stops where it was and is kept."""

from __future__ import annotations

import random
import time

import pytest
from PIL import Image

from tests.browser.test_browser import browser, page, shot  # noqa: F401  (fixtures)
from tests.browser.test_stop_browser import assert_calm
from tests.e2e.helpers import wait_for
from tests.support.apps import running_app, write_config
from tests.support.waits import wait_in_page

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stop-tabs")
    with running_app(write_config(tmp, model_path="script:slowvision"), tmp / "data") as running:
        yield running


def steady(read, what: str) -> str:
    """Wait until `read()` gives the same non-empty text twice, a second apart (the stream has ended)."""
    last = [None]

    def same():
        now = read()
        done = bool(now) and now == last[0]
        last[0] = now
        time.sleep(1.0)
        return now if done else None

    return wait_for(same, what)


def test_stop_in_the_image_tab_is_calm(page, app, tmp_path):  # noqa: F811
    photo = tmp_path / "dot.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(photo)
    page.goto(app.url)
    page.get_by_role("tab", name="Image understanding").click()
    box = page.locator("#vision-input")
    chat = page.locator("#vision-chatbot")
    rng = random.Random(5)
    box.locator("input[type=file]").set_input_files(str(photo))
    wait_in_page(page, page.locator("#vision-cost"), "the image to be read", text="dot.png")
    for i in range(3):  # the first question brings the image; follow-ups keep asking about it
        box.locator("textarea").fill(f"question {i}")
        box.locator("textarea").press("Enter")
        bots = chat.get_by_test_id("bot")
        wait_for(lambda: bots.count() > i and bots.nth(i).inner_text().strip(), "the answer to start")
        time.sleep(rng.uniform(0.2, 2.5))
        page.locator("#vision-stop").click()
        answer = steady(lambda: bots.nth(i).inner_text().strip(), "the answer to stop")
        assert_calm(page)
        assert answer.startswith("saw") and len(answer.split()) < 150, "Stop did not stop the answer"
        assert f"question {i}" in chat.get_by_test_id("user").last.inner_text()
    shot(page, "vision-stop-calm.png")


def test_stop_in_the_article_tab_is_calm_and_keeps_the_text(page, app):  # noqa: F811
    page.goto(app.url)
    page.get_by_role("tab", name="Article · 图文创作").click()
    page.locator("#article-title textarea").fill("A slow article")
    page.locator("#article-write").click()
    preview = page.locator("#article-preview")
    wait_for(lambda: "w3" in preview.inner_text(), "the article text to stream")
    page.locator("#article-stop").click()
    text = steady(lambda: preview.inner_text(), "the article to stop")
    assert_calm(page)
    assert "w3" in text and "w150" not in text, "Stop did not stop the writing"
    assert "Stopped" in page.locator("#article-notice").inner_text()
    steps = page.locator("#article-steps").inner_text()
    assert "Write the text · Stopped" in steps and "running" not in steps, steps  # not left "running"
    assert "Choose one image each · not run" in steps, steps
    drafts = app.services.drafts
    user = next(iter({s for s in _users(app)}))
    draft = drafts.load(user, drafts.list(user)[0].id)
    assert draft.status == "stopped" and "w3" in draft.text()
    shot(page, "article-stop-calm.png")


def _users(app) -> set[str]:
    import sqlite3

    with sqlite3.connect(app.services.drafts.db_path) as db:
        return {row[0] for row in db.execute("SELECT DISTINCT user_id FROM drafts")}
