"""The Models tab in a real browser: find what a new_models folder holds, download a tiny checkpoint from the
fake hub with its progress and job list, load it into the chat engine and ask it something."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.browser.helpers import start_new_chat
from tests.browser.test_browser import browser, page, send, shot  # noqa: F401  (fixtures)
from tests.support.apps import running_app, write_config
from tests.support.fake_hub import fake_hub
from tests.support.tiny_checkpoints import write_tiny_internlm2
from tests.support.waits import wait_in_page, wait_until

pytestmark = pytest.mark.browser
REPO_ID = "internlm/internlm2-tiny"


def fill(pg, elem_id: str, text: str) -> None:
    pg.locator(f"#{elem_id} input, #{elem_id} textarea").first.fill(text)


def test_find_download_load_and_ask(page, tmp_path):  # noqa: F811
    served = write_tiny_internlm2(tmp_path / "hub" / REPO_ID, seed=2)
    share = tmp_path / "new_models"
    first = shutil.copytree(served, share / "Shanghai_AI_Laboratory" / "internlm2-chat-1_8b", copy_function=os.link)
    data = tmp_path / "data"
    cfg = write_config(tmp_path, engine="hf", model_path=str(first),
                       extra=f"models:\n  search_dirs: [{share}, {data / 'models'}]\n")
    # A short reply is enough to see the downloaded model answer (random weights write filler tokens).
    cfg.write_text(cfg.read_text().replace("    family: auto\n", "    family: auto\n    device: cpu\n"
                                           "    defaults:\n      max_new_tokens: 24\n"))
    with fake_hub(tmp_path / "hub") as hub, running_app(cfg, data) as app:
        page.goto(app.url)
        page.get_by_role("tab", name="Models").click()
        table = page.locator("#models-table")
        wait_in_page(page, table, "the found checkpoint", text="Shanghai_AI_Laboratory/internlm2-chat-1_8b")
        assert "internlm2" in table.inner_text() and "fits" in table.inner_text()

        fill(page, "models-repo", REPO_ID)
        fill(page, "models-endpoint", hub.url)
        page.locator("#models-start").click()
        wait_in_page(page, page.locator("#models-jobs"), "the download to finish", text="done")
        assert "of 25.5 MiB" in page.locator("#models-progress").inner_text()
        wait_in_page(page, table, "the downloaded checkpoint in the table", text=REPO_ID)
        dest = data / "models" / REPO_ID
        assert (dest / "model-00002-of-00002.safetensors").is_file()

        page.locator("#models-pick input").click()
        page.get_by_role("option", name=f"{REPO_ID} (internlm2").click()
        page.locator("#models-load").click()
        wait_in_page(page, page.locator("#models-notice"), "the load notice", text=f"Loading {REPO_ID} into chat")
        pool = app.services.engines
        wait_until(lambda: pool.state("chat").state in ("ready", "failed"), "the downloaded model to load",
                   progress=lambda: pool.state("chat"))
        assert pool.state("chat").state == "ready", pool.state("chat")
        assert pool.config_of("chat").model_path == str(dest)
        wait_in_page(page, page.locator("#model-status"), "the header to name the new model", text="internlm2-tiny")
        engine_choice = page.locator("#models-engine input").input_value()
        assert engine_choice.startswith("chat: Chat, Article, Image understanding, Agent"), engine_choice
        shot(page, "models/models-tab.png")

        page.get_by_role("tab", name="Chat").click()
        start_new_chat(page)
        send(page, "Hello")
        wait_in_page(page, page.get_by_test_id("bot").last, "a reply from the downloaded model", empty=False)
        shot(page, "models/models-reply.png")

        page.evaluate("localStorage.setItem('puyu-lang', 'zh')")
        page.reload()
        page.get_by_role("tab", name="模型").click()
        wait_in_page(page, page.locator("#models-table"), "the table in Chinese", text="完整")
        wait_in_page(page, page.locator("#models-jobs"), "the job list in Chinese", text="完成")
        assert "名称" in page.locator("#models-table").inner_text()
        shot(page, "models/models-tab-zh.png")
