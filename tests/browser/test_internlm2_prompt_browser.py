"""InternLM2-Chat (the tiny official layout, remote code off) in a real browser: the system prompt box shows
the official meta instruction, and the prompt ids the model gets follow the box — as shown, emptied (no
system block at all), and edited."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from studio.families.internlm2 import BOS_ID, IM_END_ID, IM_START_ID, META_INSTRUCTION
from studio.families.plain_text import plain_ids
from tests.support.apps import running_app, write_config
from tests.support.tiny_checkpoints import write_tiny_internlm2
from tests.support.waits import wait_until

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("internlm2-prompt")
    model = write_tiny_internlm2(tmp / "internlm2-chat-tiny")
    cfg = write_config(tmp, engine="hf", model_path=str(model))  # family: auto, detected from config.json
    cfg.write_text(cfg.read_text().replace("    family: auto\n", "    family: auto\n    device: cpu\n"))
    with running_app(cfg, tmp / "data") as running:
        yield running


@pytest.fixture
def sent(app, monkeypatch):
    """The prompt ids of every generation the engine has run to its end."""
    engine, ids = app.services.engines.get("chat"), []
    real = engine.stream

    def recording(prepared, cancel):
        yield from real(prepared, cancel)
        ids.append(list(prepared.payload.ids))  # once the reply has ended

    monkeypatch.setattr(engine, "stream", recording)
    return ids


def _expected(tok, system, user: str) -> list[int]:
    """The official prompt for one user turn: BOS, the system turn (None: none), the turn, the generation prompt."""
    def turn(role, text):
        return [IM_START_ID, *plain_ids(tok, f"{role}\n{text}"), IM_END_ID, *plain_ids(tok, "\n")]

    head = turn("system", system) if system is not None else []
    return [BOS_ID, *head, *turn("user", user), IM_START_ID, *plain_ids(tok, "assistant\n")]


def _send(page, sent: list, text: str) -> list[int]:
    before = len(sent)
    page.locator("#chat-input textarea").fill(text)
    page.locator("#chat-input textarea").press("Enter")
    wait_until(lambda: len(sent) > before, f"the model to answer {text!r}")
    wait_until(lambda: page.get_by_test_id("bot").count() == 1, "the reply in the transcript")
    ids = sent[-1]
    page.locator("#clear-btn").click()
    wait_until(lambda: page.get_by_test_id("bot").count() == 0, "the conversation to be cleared")
    return ids


def test_the_box_shows_the_meta_instruction_and_the_prompt_follows_it(app, sent, page, tmp_path):
    tok = app.services.engines.get("chat").tokenizer
    page.goto(app.url)
    page.get_by_text("Parameters").click()
    box = page.locator("#system-prompt textarea")
    wait_until(lambda: box.input_value() == META_INSTRUCTION, "the box to show InternLM2's meta instruction")
    page.screenshot(path=str(tmp_path / "internlm2-system-prompt.png"))
    # As shown: the official default, token for token.
    assert _send(page, sent, "hello") == _expected(tok, META_INSTRUCTION, "hello")
    # Emptied: no system block at all (not an empty one).
    box.fill("")
    assert _send(page, sent, "hello") == _expected(tok, None, "hello")
    # Edited: the edit, as typed.
    box.fill("Be brief.")
    assert _send(page, sent, "hello") == _expected(tok, "Be brief.", "hello")
