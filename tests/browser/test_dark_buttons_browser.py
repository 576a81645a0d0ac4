"""Dark mode: a disabled button looks quieter than an enabled one, never like the highlighted one."""

from __future__ import annotations

import pytest

from tests.browser.test_browser import browser, page, send  # noqa: F401  (fixtures)
from tests.browser.test_versions_browser import bubbles
from tests.support.apps import running_app, write_config
from tests.support.waits import wait_in_page, wait_until

pytestmark = pytest.mark.browser
STYLE = ("s => { const b = document.querySelector(s), c = getComputedStyle(b);"
         " return [b.getAnimations().length, c.backgroundColor, c.opacity]; }")


def settled(pg, selector: str) -> list:
    """The button's background and opacity once its colour transition has finished."""
    return wait_until(lambda: (v := pg.evaluate(STYLE, selector))[0] == 0 and v, f"{selector}'s transition to end")


def test_the_disabled_version_arrow_is_not_blue_in_dark_mode(page, tmp_path):  # noqa: F811
    with running_app(write_config(tmp_path), tmp_path / "data") as app:
        page.goto(app.url)
        wait_in_page(page, page.locator("#model-status .status-ready"), "the model to be ready", visible=True)
        send(page, "hi")
        wait_until(lambda: len(bubbles(page)) == 2 and "echo: hi" in bubbles(page)[1], "the reply",
                   progress=lambda: bubbles(page))
        page.locator("#regen-btn").click()
        wait_until(lambda: "‹ 2/2 ›" in bubbles(page)[-1], "version 2 of the reply", progress=lambda: bubbles(page))
        wait_in_page(page, page.locator("#versions-next"), "the versions bar", visible=True)
        page.locator("#theme-toggle").click()
        wait_until(lambda: page.evaluate("document.body.classList.contains('dark')"), "dark mode")
        page.mouse.move(0, 0)  # hover nothing
        assert page.locator("#versions-next").is_disabled() and page.locator("#versions-prev").is_enabled()
        (_, enabled_bg, _), (_, disabled_bg, opacity) = settled(page, "#versions-prev"), settled(page, "#versions-next")
        # Gradio paints a disabled secondary button with the hover fill, which Soft's dark mode makes primary blue.
        assert disabled_bg == enabled_bg and float(opacity) < 1, (enabled_bg, disabled_bg, opacity)
