"""The image tab in a real browser: upload an image, ask, see the answer beside its thumbnail.

Runs on the tiny random-weight InternVL2 checkpoint (official layout, remote code off), so the
answer is gibberish but comes from the real model path."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.browser.test_browser import ARTIFACTS, browser, page, shot, sync_api  # noqa: F401  (fixtures)
from tests.support.apps import running_app, write_config
from tests.support.tiny_internvl2 import write_tiny_internvl2
from tests.support.waits import wait_in_page

pytestmark = pytest.mark.browser
expect = sync_api.expect


def test_upload_an_image_ask_and_see_the_answer(page, tmp_path):  # noqa: F811
    model = write_tiny_internvl2(tmp_path / "InternVL2-tiny")
    cfg = write_config(tmp_path, engine="hf", model_path=str(model))
    cfg.write_text(cfg.read_text().replace("    family: auto\n", "    family: auto\n    device: cpu\n"))
    photo = tmp_path / "sunset.png"
    img = Image.new("RGB", (640, 360), (250, 140, 40))
    img.paste((40, 40, 120), (0, 240, 640, 360))
    img.save(photo)
    with running_app(cfg, tmp_path / "data") as app:
        page.goto(app.url)
        page.get_by_role("tab", name="Image understanding").click()
        box = page.locator("#vision-input")
        box.locator("input[type=file]").set_input_files(str(photo))
        wait_in_page(page, page.locator("#vision-cost"), "the image cost line", text="sunset.png: 640×360")
        page.locator("#vision-tiles input[type=number]").fill("2")
        page.locator("#vision-max-new input[type=number]").fill("12")
        box.locator("textarea").fill("What is in this picture?")
        box.locator("textarea").press("Enter")
        chat = page.locator("#vision-chatbot")
        wait_in_page(page, chat.get_by_test_id("bot").last, "the answer", empty=False)
        wait_in_page(page, chat.locator("img"), "the thumbnail", visible=True)  # the thumbnail in the transcript
        expect(chat.get_by_test_id("user").last).to_contain_text("What is in this picture?")
        page.wait_for_timeout(500)
        shot(page, "vision-answer.png")
        assert page.dialogs == []
