"""Page steps the browser tests share."""

from __future__ import annotations

from tests.support.waits import wait_until


def start_new_chat(page) -> None:
    """Wait for the page load to resume the local user's latest conversation (every page without a login
    shares that user), then click New conversation: the test starts on an empty transcript."""
    wait_until(lambda: page.evaluate("localStorage.getItem('puyu-user')"), "the page load's /resume")
    page.locator("#new-chat").click()
    wait_until(lambda: page.get_by_test_id("user").count() == 0 and page.get_by_test_id("bot").count() == 0,
               "an empty transcript after New conversation", step=0.2)
