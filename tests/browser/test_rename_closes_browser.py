"""The sidebar's item menu closes once a rename is submitted (it stayed open, rename box and Delete showing)."""

from __future__ import annotations

import pytest

from tests.browser.test_browser import browser, page  # noqa: F401  (fixtures)
from tests.browser.test_sidebar_browser import app, item, seeded, titles  # noqa: F401  (fixtures)
from tests.support.waits import wait_until

pytestmark = pytest.mark.browser


def test_enter_in_the_rename_box_closes_the_menu(page, app):  # noqa: F811
    ids = seeded(page, app)
    weekly = item(page, ids["Weekly plan"])
    weekly.hover()
    weekly.locator(".item-menu").click()
    box = weekly.locator(".item-rename textarea, .item-rename input").first
    wait_until(box.is_visible, "the inline rename box")
    box.fill("Plan for the week")
    box.press("Enter")
    wait_until(lambda: "Plan for the week" in titles(page), "the renamed item", progress=lambda: titles(page))
    # Closed in the page as the box is submitted, so before the renamed list comes back.
    assert not box.is_visible() and not weekly.locator(".item-delete").is_visible()
    weekly.hover()
    weekly.locator(".item-menu").click()  # it still opens again
    wait_until(box.is_visible, "the rename box again")
