"""A newcomer's first ten minutes on the embedded SmolLM2 default, walked in one browser session with a
numbered screenshot per step under test-artifacts/newcomer/: load, chat, Stop, Escape, Regenerate, edit
and flip versions, search, rename, exports, the article tab, the image tab's panel, System, 中文, dark
mode and a reload."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.browser.test_browser import ARTIFACTS, browser, page, send  # noqa: F401  (fixtures)
from tests.browser.test_stop_browser import ERROR_BADGE
from tests.browser.test_versions_browser import bubbles, edit_message
from tests.support.apps import EMBEDDED_CONFIG, running_app
from tests.support.waits import wait_in_page, wait_until

# The real model writes every reply, the article included: minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.browser, pytest.mark.slow]
OUT = ARTIFACTS / "newcomer"
RUNNING = "#chat-notice .chat-generating"
STATS = "#chatbot .reply-stats"


class Walk:
    """The page and a counter for the numbered screenshots."""

    def __init__(self, pg) -> None:
        self.pg, self.n = pg, 0

    def shot(self, name: str) -> Path:
        """Save the next numbered full-page screenshot."""
        self.n += 1
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{self.n:02d}-{name}.png"
        self.pg.screenshot(path=str(path), full_page=True)
        return path


def idle(pg) -> None:
    """Wait until no reply runs (the generating line gone)."""
    wait_until(lambda: pg.locator(RUNNING).count() == 0, "the reply to end", progress=lambda: bubbles(pg))


def set_max_new_tokens(pg, n: int) -> None:
    """Type a value into the Max new tokens slider's number box (Parameters is open)."""
    box = pg.locator("#parameters-panel input[type=number]").first

    def typed() -> bool:
        # The page load's config defaults can land after a first fill and put 512 back: type again.
        if box.input_value() != str(n):
            box.fill(str(n))
            box.press("Enter")
        return box.input_value() == str(n)

    wait_until(typed, f"max_new_tokens {n}", step=1.0)


def stats_lines(pg) -> list[str]:
    return pg.locator(STATS).all_inner_texts()


def download(pg, button: str, tmp: Path) -> Path:
    """Click an export button and save what the file link then offers."""
    pg.locator("#export-file a").evaluate_all("links => links.forEach(a => a.remove())")
    pg.locator(button).click()
    link = pg.locator("#export-file a").first
    wait_in_page(pg, link, f"the file of {button}", visible=True)
    with pg.expect_download() as info:
        link.click()
    path = tmp / info.value.suggested_filename
    info.value.save_as(path)
    return path


def test_a_newcomers_first_ten_minutes(page, tmp_path, embedded_cache_dir):  # noqa: F811
    walk, pg = Walk(page), page
    with running_app(EMBEDDED_CONFIG, tmp_path / "data", cache_dir=embedded_cache_dir, wait_ready=False) as app:
        _chat(walk, pg, app.url)
        _versions(walk, pg)
        _sidebar(walk, pg)
        _exports(walk, pg, tmp_path)
        _article(walk, pg)
        _other_tabs(walk, pg)
        _chinese_dark_reload(walk, pg)
        assert pg.dialogs == []


def _chat(walk, pg, url: str) -> None:
    pg.goto(url)
    wait_in_page(pg, pg.locator("#model-status"), "the status line", visible=True)
    walk.shot("first-page")
    wait_in_page(pg, pg.locator("#model-status .status-ready"), "the model to be ready", visible=True)
    assert "SmolLM2" in pg.locator("#model-status").inner_text()
    walk.shot("model-ready")
    pg.locator("#parameters-panel button.label-wrap").first.click()
    set_max_new_tokens(pg, 400)  # long enough to be stopped midway
    send(pg, "Tell me a long story about a dragon who learns to bake bread.")
    wait_in_page(pg, pg.locator(RUNNING), "the generating line to count tokens", text="tokens")
    wait_in_page(pg, pg.get_by_test_id("bot").last, "the reply to start", empty=False)
    walk.shot("chat-generating")
    pg.locator("#stop-btn").click()
    idle(pg)
    wait_in_page(pg, pg.locator(STATS).last, "the stopped reply's stats", text="stopped")
    walk.shot("chat-stopped")
    send(pg, "Now write a long poem about the sea at night.")
    wait_in_page(pg, pg.locator(RUNNING), "the second reply to run", text="tokens")
    pg.locator("#chat-input textarea").press("Escape")
    idle(pg)
    wait_until(lambda: len(stats_lines(pg)) == 2 and "stopped" in stats_lines(pg)[-1], "Escape's stopped reply",
               progress=lambda: stats_lines(pg))
    walk.shot("chat-escape-stopped")
    set_max_new_tokens(pg, 24)  # short replies from here on
    send(pg, "Say hello in one short sentence.")
    wait_until(lambda: len(stats_lines(pg)) == 3 and "tok/s" in stats_lines(pg)[-1], "the third reply's stats",
               progress=lambda: bubbles(pg))
    idle(pg)
    assert "tokens" in stats_lines(pg)[-1] and "first token" in stats_lines(pg)[-1]
    assert pg.locator(ERROR_BADGE).count() == 0
    walk.shot("chat-reply-stats")


def _versions(walk, pg) -> None:
    pg.locator("#regen-btn").click()
    wait_until(lambda: "‹ 2/2 ›" in bubbles(pg)[-1], "the regenerated reply's version mark",
               progress=lambda: bubbles(pg))
    idle(pg)
    walk.shot("regenerated-2-of-2")
    edit_message(pg, 0, "Tell me a short story about a cat.")
    wait_until(lambda: len(bubbles(pg)) == 2 and bubbles(pg)[0].endswith("‹ 2/2 ›"), "the edited first message",
               progress=lambda: bubbles(pg))
    idle(pg)
    wait_in_page(pg, pg.locator("#versions-bar"), "the versions bar", text="version 2 of 2")
    walk.shot("edited-first-message")
    pg.get_by_test_id("user").first.click()
    wait_in_page(pg, pg.locator("#versions-bar"), "the bar for message 1", text="Message 1")
    pg.locator("#versions-prev").click()
    wait_until(lambda: len(bubbles(pg)) == 6 and "‹ 1/2 ›" in bubbles(pg)[0], "the original branch",
               progress=lambda: bubbles(pg))
    assert "dragon" in bubbles(pg)[0] and "sea" in bubbles(pg)[2]
    walk.shot("version-1-of-2")
    pg.locator("#versions-next").click()
    wait_until(lambda: len(bubbles(pg)) == 2 and "cat" in bubbles(pg)[0], "the edited branch again",
               progress=lambda: bubbles(pg))
    pg.locator("#versions-prev").click()  # the rest of the walk works on the branch with all three turns
    wait_until(lambda: len(bubbles(pg)) == 6, "the original branch again", progress=lambda: bubbles(pg))


def _titles(pg) -> list[str]:
    return pg.locator("#conversations .list-item .item-title").all_inner_texts()


def _sidebar(walk, pg) -> None:
    search = pg.locator("#conv-search textarea, #conv-search input").first
    search.fill("bake bread")  # message text, not the title
    wait_until(lambda: len(_titles(pg)) == 1, "the conversation found by its text", progress=lambda: _titles(pg))
    walk.shot("search-found")
    search.fill("no such words anywhere")
    wait_in_page(pg, pg.locator("#conversations"), "the no-matches note", text="No conversation matches")
    assert _titles(pg) == []
    walk.shot("search-no-match")
    search.fill("")
    wait_until(lambda: len(_titles(pg)) == 1, "the whole list again", progress=lambda: _titles(pg))
    entry = pg.locator("#conversations .list-item").first
    entry.hover()
    entry.locator(".item-menu").click()
    box = entry.locator(".item-rename textarea, .item-rename input").first
    wait_until(box.is_visible, "the inline rename box")
    box.fill("My first chat")
    box.press("Enter")
    wait_until(lambda: _titles(pg) == ["My first chat"], "the renamed item", progress=lambda: _titles(pg))
    walk.shot("renamed")


def _exports(walk, pg, tmp: Path) -> None:
    pg.locator("#export-panel button.label-wrap").first.click()
    md = download(pg, "#export-markdown", tmp).read_text(encoding="utf-8")
    assert "Tell me a long story about a dragon" in md and "poem about the sea" in md
    assert "```" not in md.split("dragon", 1)[0]  # messages are Markdown, not fenced code
    bundle = download(pg, "#export-homework", tmp)
    with zipfile.ZipFile(bundle) as zf:
        assert zf.namelist() == ["homework.html", "record.json"]
        record = json.loads(zf.read("record.json"))
        assert "Say hello in one short sentence." in zf.read("homework.html").decode("utf-8")
    assert [m["content"] for m in record["transcript"] if m["role"] == "user"] == [
        "Tell me a long story about a dragon who learns to bake bread.",
        "Now write a long poem about the sea at night.", "Say hello in one short sentence."]
    assert record["engine"]["engine"] == "hf"
    walk.shot("exports")


def _article(walk, pg) -> None:
    pg.get_by_role("tab", name="Article · 图文创作").click()
    wait_in_page(pg, pg.locator("#article-estimate"), "the time estimate", text="tokens/s")
    pg.locator("#article-title textarea").fill("A quiet morning walk in the park")
    walk.shot("article-estimate")
    steps = pg.locator("#article-steps")
    pg.locator("#article-write").click()
    wait_in_page(pg, steps, "the first step to run", text="Write the text")
    pg.locator("#article-stop").click()
    wait_in_page(pg, steps, "the steps to show Stopped", text="Stopped")
    assert "⏳" not in steps.inner_text()
    walk.shot("article-stopped")
    pg.locator("#article-write").click()
    wait_in_page(pg, steps, "the last article step", text="✓ Choose one image each")
    assert "⏳" not in steps.inner_text() and "Stopped" not in steps.inner_text()
    wait_in_page(pg, pg.locator("#article-preview figure img"), "a picture in the preview", visible=True)
    walk.shot("article-written")


def _other_tabs(walk, pg) -> None:
    pg.get_by_role("tab", name="Image understanding").click()
    wait_in_page(pg, pg.locator("#vision-needs"), "the image tab's panel", visible=True)
    assert not pg.locator("#vision-input").is_visible()
    assert pg.locator(ERROR_BADGE).count() == 0
    walk.shot("image-tab-panel")
    pg.get_by_role("tab", name="System").click()
    wait_in_page(pg, pg.locator("#system-models .status-ready"), "the models table", visible=True)
    assert "SmolLM2" in pg.locator("#system-models").inner_text()
    walk.shot("system-tab")


def _chinese_dark_reload(walk, pg) -> None:
    pg.get_by_role("tab", name="Chat").click()
    pg.locator("#lang-toggle").click()  # saves 中文 and reloads the page
    wait_in_page(pg, pg.locator("#new-chat"), "the Chinese UI", text="新对话")
    tabs = pg.get_by_role("tab").all_inner_texts()
    assert "对话" in tabs and "系统" in tabs and "图像理解" in tabs, tabs
    wait_in_page(pg, pg.locator("#model-status .status-ready"), "the Chinese header", visible=True)
    header = pg.locator("#model-status").inner_text()
    assert "loading" not in header and "SmolLM2" in header, header
    wait_in_page(pg, pg.locator(STATS).last, "a stats line in Chinese", text="个 token")
    assert "tok/s" not in pg.locator("#chatbot").inner_text()
    walk.shot("chinese")
    pg.locator("#theme-toggle").click()
    assert pg.evaluate("document.body.classList.contains('dark')")
    walk.shot("dark-chinese")
    pg.reload()
    wait_in_page(pg, pg.get_by_test_id("user").first, "the open conversation after a reload", text="dragon")
    wait_until(lambda: "current" in (pg.locator("#conversations .list-item").first.get_attribute("class") or ""),
               "the open conversation marked in the list")
    assert pg.evaluate("document.body.classList.contains('dark')")
    wait_in_page(pg, pg.locator("#new-chat"), "中文 after a reload", text="新对话")
    walk.shot("reloaded")
