"""The image tab on the default, text-only embedded model in a real browser: a panel saying what it needs
(in place of inputs that would fail), in both languages, and never a red Error or a toast."""

from __future__ import annotations

import pytest

from tests.browser.test_browser import browser, page, shot  # noqa: F401  (fixtures)
from tests.support.apps import EMBEDDED_CONFIG, running_app
from tests.support.waits import wait_in_page

pytestmark = pytest.mark.browser
ERROR_BADGE, TOAST = ".error", ".toast-body"  # Gradio 6's failed-event badge and its toasts


def assert_calm(pg) -> None:
    """No error badge and no toast, watched for a moment."""
    for _ in range(5):
        assert pg.locator(ERROR_BADGE).count() == 0, "an error badge appeared"
        assert pg.locator(TOAST).count() == 0, pg.locator(TOAST).all_inner_texts()
        pg.wait_for_timeout(300)


def test_the_image_tab_on_the_text_only_default_shows_what_it_needs(page, tmp_path, embedded_cache_dir):  # noqa: F811
    with running_app(EMBEDDED_CONFIG, tmp_path / "data", cache_dir=embedded_cache_dir) as app:
        page.goto(app.url)
        page.get_by_role("tab", name="Image understanding").click()
        panel = page.locator("#vision-needs")
        wait_in_page(page, panel, "the panel", text="Image understanding needs a vision model")
        assert "InternVL2-2B" in panel.inner_text() and "InternLM-XComposer2-VL-1.8B" in panel.inner_text()
        wait_in_page(page, page.locator("#vision-needs-command"), "the command to start one",
                     text="--config configs/internvl2-2b.yaml --model-path /path/to/InternVL2-2B")
        assert not page.locator("#vision-input").is_visible()  # no inputs that could only fail
        assert not page.locator("#vision-describe").is_visible()
        page.locator("#vision-needs-switch").click()  # no folder given: told in the panel, calmly
        wait_in_page(page, page.locator("#vision-needs-notice"), "the notice", text="Type the folder")
        page.locator("#vision-needs-path input, #vision-needs-path textarea").first.fill(str(tmp_path / "nowhere"))
        page.locator("#vision-needs-switch").click()
        wait_in_page(page, page.locator("#vision-needs-notice"), "the notice", text="Model path not found")
        shot(page, "vision-needs-panel.png")
        assert_calm(page)

        page.evaluate("localStorage.setItem('puyu-lang', 'zh')")
        page.reload()
        page.get_by_role("tab", name="图像理解").click()
        wait_in_page(page, page.locator("#vision-needs"), "the panel in Chinese", text="图像理解需要视觉模型")
        assert "切换到这个视觉模型" in page.locator("#vision-needs-switch").inner_text()
        shot(page, "vision-needs-panel-zh.png")
        assert_calm(page)
