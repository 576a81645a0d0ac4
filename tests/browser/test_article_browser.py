"""The article tab in a real browser: write on the embedded model, see the steps and pictures,
export to Excel and re-open the download."""

from __future__ import annotations

import pytest

from tests.browser.test_browser import ARTIFACTS, browser, page, shot, sync_api  # noqa: F401  (fixtures)
from tests.support.apps import EMBEDDED_CONFIG, running_app
from tests.support.waits import wait_in_page

pytestmark = pytest.mark.browser
expect = sync_api.expect


def test_write_an_article_and_download_the_xlsx(page, tmp_path, embedded_cache_dir):  # noqa: F811
    import openpyxl

    with running_app(EMBEDDED_CONFIG, tmp_path / "data", cache_dir=embedded_cache_dir) as app:
        page.goto(app.url)
        page.get_by_role("tab", name="Article · 图文创作").click()
        page.locator("#article-title textarea").fill("A morning with coffee and a cat")
        page.get_by_text("Settings").click()
        page.locator("#article-images input").fill("2")
        page.locator("#article-images input").press("Enter")
        page.locator("#article-write").click()
        steps = page.locator("#article-steps")
        wait_in_page(page, steps, "the last article step", text="✓ Choose one image each")
        preview = page.locator("#article-preview")
        expect(preview.locator("figure img").first).to_be_visible()
        page.wait_for_timeout(500)
        shot(page, "article-written.png")
        page.locator("#article-export-xlsx").click()
        link = page.locator("#article-export-file a").first
        wait_in_page(page, link, "the export link", visible=True)
        with page.expect_download() as info:
            link.click()
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(path)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "article.xlsx").write_bytes(path.read_bytes())
        wb = openpyxl.load_workbook(path)
        assert wb["Article"].max_row >= 3 and wb["Article"]._images
        assert wb["About"]["B1"].value or wb["About"]["A1"].value
        assert page.dialogs == []
