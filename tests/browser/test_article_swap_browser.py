"""The article tab in Chromium on the scripted engine: a helpful placeholder on first visit, one click on a
candidate swaps the picture, the settings at 1366x768, and the tab in 中文 with no English article text."""

from __future__ import annotations

import re

import pytest

from tests.browser.test_browser import ARTIFACTS, browser, shot, sync_api  # noqa: F401  (fixtures)
from tests.support.waits import wait_until
from tests.support.apps import running_app, write_config
from tests.support.scripted import ARTICLE_TEXT, CAT_CAPTION, scripted
from tests.support.waits import wait_in_page

pytestmark = pytest.mark.browser
expect = sync_api.expect


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("article-swap")
    with running_app(write_config(tmp), tmp / "data") as running:
        yield running


def open_tab(browser, app, locale="en-US", name="Article · 图文创作"):  # noqa: F811
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale=locale)
    page = context.new_page()
    page.goto(app.url)
    page.get_by_role("tab", name=name).click()
    return page


def write(page, app, title: str) -> None:
    """Write an article with two pictures (the scripted engine answers the text and two captions)."""
    scripted(app.services).enqueue(ARTICLE_TEXT, CAT_CAPTION, '"a rocket launch"')
    page.locator("#article-title textarea").fill(title)
    page.locator("#article-settings").click()
    page.locator("#article-images input").fill("2")
    page.locator("#article-images input").press("Enter")
    page.locator("#article-write").click()
    wait_in_page(page, page.locator("#article-steps"), "the last step", text="✓ Choose one image each")


def test_first_visit_shows_what_to_do_and_the_estimate(browser, app):  # noqa: F811
    page = open_tab(browser, app)
    preview = page.locator("#article-preview")
    wait_in_page(page, preview, "the placeholder", text="Your illustrated article appears here")
    assert "press Write" in preview.inner_text()
    wait_in_page(page, page.locator("#article-estimate"), "the estimate line", text="Time")
    page.locator("#article-settings").click()
    shot(page, "article-first-visit-1366.png")
    for label in page.locator("#article-settings label span").all():  # no label wraps onto a third line
        box = label.bounding_box()
        if box and label.inner_text().strip():
            assert box["height"] < 3 * 22, (label.inner_text(), box)
    page.context.close()


def test_one_click_on_a_candidate_swaps_the_picture(browser, app):  # noqa: F811
    page = open_tab(browser, app)
    write(page, app, "Swap a picture")
    user = next(iter(_users(app)))
    drafts = app.services.drafts
    before = drafts.load(user, drafts.list(user)[0].id)
    block = next(i for i, b in enumerate(before.blocks) if b.image)
    first = before.blocks[block].image
    thumbs = page.locator("#article-candidates button.thumbnail-item")
    wait_for(lambda: thumbs.count() == len(first.candidates) > 1, "the candidates of the first picture")
    assert page.locator("#article-block input").input_value().startswith(f"¶{block + 1}")
    preview_before = page.locator("#article-preview img").first.get_attribute("src")
    thumbs.nth(1).click()  # one click, no "Use" button
    wait_for(lambda: drafts.load(user, before.id).blocks[block].image.chosen == 1, "the swap to be stored")
    after = drafts.load(user, before.id).blocks[block].image
    assert after.path != first.path and after.caption == first.caption
    wait_for(lambda: page.locator("#article-preview img").first.get_attribute("src") != preview_before,
             "the preview to show the new picture")
    assert page.locator("#article-pick").count() == 0 or not page.locator("#article-pick").is_visible()
    shot(page, "article-swapped.png")
    page.context.close()


def test_the_article_tab_in_chinese_has_no_english_article_text(browser, app):  # noqa: F811
    page = open_tab(browser, app, "zh-CN", "图文创作")
    wait_in_page(page, page.locator("#article-preview"), "the placeholder", text="图文并茂的文章会显示在这里")
    write_zh(page, app)
    steps = page.locator("#article-steps").inner_text()
    for name in ("撰写正文", "切分段落", "确定配图位置", "撰写图片标题", "查找候选图片", "为每处选定一张图"):
        assert name in steps, steps
    model_text = ARTICLE_TEXT + " a cat sitting on a sofa a rocket launch Cats sleep"
    words = set(re.findall(r"[A-Za-z]{3,}", steps)) - set(re.findall(r"[A-Za-z]{3,}", model_text)) - {"token"}
    assert not words, (words, steps)  # only the model's own words (captions) are English ("token" is the term)
    settings = page.locator("#article-settings")
    assert "自动" in page.locator("#article-images").inner_text() or page.locator("#article-images input").input_value()
    shot(page, "article-zh.png")
    assert not set(re.findall(r"[A-Za-z]{4,}", settings.inner_text())) - {"Beam"}, settings.inner_text()
    page.context.close()


def write_zh(page, app) -> None:
    scripted(app.services).enqueue(ARTICLE_TEXT, CAT_CAPTION, '"a rocket launch"')
    page.locator("#article-title textarea").fill("猫的午后")
    page.locator("#article-settings").click()
    page.locator("#article-images input").fill("2")
    page.locator("#article-images input").press("Enter")
    page.locator("#article-write").click()
    wait_in_page(page, page.locator("#article-steps"), "the last step", text="✓ 为每处选定一张图")


def _users(app) -> set[str]:
    import sqlite3

    with sqlite3.connect(app.services.drafts.db_path) as db:
        return {row[0] for row in db.execute("SELECT DISTINCT user_id FROM drafts")}


def wait_for(done, what):
    """Poll until done(); a page that has stopped changing fails within a minute."""
    return wait_until(done, what, stall_s=60)
