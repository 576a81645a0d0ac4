"""The sidebar in a real browser: search filters the list, date groups, per-item rename and delete (chats
and article drafts), a reload reopens the open conversation, presets fill the system prompt box, and a
narrow window starts with the sidebar closed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from studio.core.article import ArticleBlock, ArticleDraft
from studio.core.session import ChatSession
from studio.core.types import Message
from tests.support.apps import running_app, write_config
from tests.support.waits import wait_in_page, wait_until

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

DAY = 86_400


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sidebar-browser")
    with running_app(write_config(tmp), tmp / "data") as running:
        yield running


def user_of_page(page) -> str:
    """The page's user key, once /resume has stored it in the browser."""
    return wait_until(lambda: page.evaluate("localStorage.getItem('puyu-user')"), "the per-browser user key")


def seeded(page, app) -> dict[str, str]:
    """Open the app, replace its user's conversations with four of different ages, reload; title -> id."""
    page.goto(app.url)
    user = user_of_page(page)
    for earlier in app.services.store.list(user):  # the module's app (and its local user) is shared by every test
        app.services.store.delete(user, earlier.id)
    now, ids = time.time(), {}
    for title, age, reply in [("Sorting in Python", 60, "use sorted()"), ("小猫的故事", DAY + 60, "从前有一只小猫"),
                              ("Weekly plan", 3 * DAY, "Monday: write"), ("Old notes", 60 * DAY, "kept 100% safe")]:
        session = ChatSession(title=title, messages=[Message.of("user", f"about {title}"),
                                                     Message.of("assistant", reply)])
        session.updated = now - age
        app.services.store.save(user, session)
        ids[title] = session.id
    page.reload()
    wait_in_page(page, page.locator("#conversations"), "the seeded list", text="Old notes")
    return ids


def titles(page, where: str = "#conversations") -> list[str]:
    return page.locator(f"{where} .list-item .item-title").all_inner_texts()


def item(page, conv_id: str, prefix: str = "conv"):
    return page.locator(f"#{prefix}-{conv_id}")


def wait_titles(page, expected: list[str], where: str = "#conversations") -> None:
    wait_until(lambda: titles(page, where) == expected, f"the list to show {expected}",
               progress=lambda: titles(page, where))


def test_groups_and_search_filter_the_list(page, app):
    seeded(page, app)
    groups = page.locator("#conversations .block.list-group").all_inner_texts()
    assert groups == ["Today", "Yesterday", "Previous 7 days", "Older"]
    assert titles(page) == ["Sorting in Python", "小猫的故事", "Weekly plan", "Old notes"]
    search = page.locator("#conv-search textarea, #conv-search input").first
    search.fill("小猫")
    wait_titles(page, ["小猫的故事"])
    search.fill("100%")  # in a reply's text; % is no wildcard
    wait_titles(page, ["Old notes"])
    search.fill("no such thing anywhere")
    wait_in_page(page, page.locator("#conversations"), "the no-matches note", text="No conversation matches")
    assert titles(page) == []
    search.fill("")
    wait_titles(page, ["Sorting in Python", "小猫的故事", "Weekly plan", "Old notes"])


def test_rename_and_delete_an_item_in_place(page, app):
    ids = seeded(page, app)
    user = user_of_page(page)
    weekly = item(page, ids["Weekly plan"])
    assert not weekly.locator(".item-rename").is_visible()  # the menu is closed until asked
    weekly.hover()
    weekly.locator(".item-menu").click()
    box = weekly.locator(".item-rename textarea, .item-rename input").first
    wait_until(box.is_visible, "the inline rename box")
    box.fill("周计划 · renamed")
    box.press("Enter")
    wait_titles(page, ["Sorting in Python", "小猫的故事", "周计划 · renamed", "Old notes"])
    assert app.services.store.load(user, ids["Weekly plan"]).title == "周计划 · renamed"

    old = item(page, ids["Old notes"])
    old.hover()
    old.locator(".item-menu").click()
    page.once("dialog", lambda dialog: dialog.dismiss())  # asked first; No keeps it
    old.locator(".item-delete").click()
    page.wait_for_timeout(300)
    assert app.services.store.exists(user, ids["Old notes"])
    page.once("dialog", lambda dialog: dialog.accept())
    old.locator(".item-delete").click()
    wait_titles(page, ["Sorting in Python", "小猫的故事", "周计划 · renamed"])
    assert not app.services.store.exists(user, ids["Old notes"])


def test_reload_returns_to_the_open_conversation(page, app):
    ids = seeded(page, app)
    item(page, ids["Weekly plan"]).locator(".item-title").click()
    wait_in_page(page, page.get_by_test_id("bot").last, "the older conversation", text="Monday: write")
    wait_until(lambda: "current" in (item(page, ids["Weekly plan"]).get_attribute("class") or ""),
               "the opened item marked as open")
    page.reload()
    wait_in_page(page, page.get_by_test_id("user").last, "the same conversation after a reload",
                 text="about Weekly plan")
    assert "current" in (item(page, ids["Weekly plan"]).get_attribute("class") or "")
    page.locator("#new-chat").click()  # a new, empty conversation: a reload opens the newest again
    wait_until(lambda: page.evaluate("localStorage.getItem('puyu-conv')") == "", "the open id forgotten")
    page.reload()
    wait_in_page(page, page.get_by_test_id("user").last, "the newest after a reload", text="about Sorting")


def test_draft_items_rename_and_delete(page, app):
    page.goto(app.url)
    user = user_of_page(page)
    draft = ArticleDraft(title="A trip to the hills", instruction="A trip", blocks=[ArticleBlock("We walked.")])
    app.services.drafts.save(user, draft)
    page.reload()
    wait_titles(page, ["A trip to the hills"], "#article-drafts")
    entry = item(page, draft.id, "draft")
    assert "1 paragraph · 0 images" in entry.inner_text()
    entry.hover()
    entry.locator(".item-menu").click()
    box = entry.locator(".item-rename textarea, .item-rename input").first
    box.fill("山间旅行")
    box.press("Enter")
    wait_titles(page, ["山间旅行"], "#article-drafts")
    assert app.services.drafts.load(user, draft.id).title == "山间旅行"
    entry.hover()
    if not entry.locator(".item-delete").is_visible():
        entry.locator(".item-menu").click()
    page.once("dialog", lambda dialog: dialog.accept())
    entry.locator(".item-delete").click()
    wait_in_page(page, page.locator("#article-drafts"), "the empty drafts list", text="No drafts yet")
    assert app.services.drafts.list(user) == []


def test_a_preset_fills_the_system_prompt_box(page, app):
    page.goto(app.url)
    page.get_by_text("Parameters").click()
    page.locator("#preset-pick input").click()
    page.get_by_role("option", name="Concise").click()
    prompt = page.locator("#system-prompt textarea")
    wait_until(lambda: "briefly" in prompt.input_value(), "the preset in the system prompt box",
               progress=prompt.input_value)


@pytest.mark.parametrize("width, is_open", [(500, False), (1360, True)])
def test_sidebar_starts_closed_on_a_narrow_window(app, width, is_open):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": width, "height": 900}, locale="en-US")
        page.goto(app.url)
        user_of_page(page)  # the page has loaded and run its load events
        sidebar = page.locator("#sidebar")
        wait_until(lambda: ("open" in sidebar.get_attribute("class").split()) == is_open,
                   f"the sidebar {'open' if is_open else 'closed'} at {width} px",
                   progress=lambda: sidebar.get_attribute("class"))
        page.wait_for_timeout(500)  # and it stays so
        assert ("open" in sidebar.get_attribute("class").split()) == is_open
        browser.close()
