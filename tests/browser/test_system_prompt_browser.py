"""The chat tab's system prompt box in a real browser: empty with a hint while the model loads, the model's
default once it has loaded (shown by the status timer), and an emptied box sends no system prompt."""

from __future__ import annotations

import shutil
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from studio.tasks import chat as chat_task
from tests.support.apps import running_app, write_config
from tests.support.waits import wait_in_page, wait_until

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

DEFAULT = "You are a terse assistant."
PENDING = "The model's default — shown once the model has loaded"
NONE = "No system prompt"
UNDISCLOSED = "The model's own default (it does not say what it is)"


def _loading_until(pool, gate: threading.Event) -> None:
    """Make `pool` report its models as still loading until `gate` is set (the test decides when they load)."""
    real = pool.state

    def state(name):
        st = real(name)
        return st if gate.is_set() else replace(st, state="loading", progress=0.5, text="held by the test")

    pool.state = state


def _default_once_loaded(services, engine):
    """The model's default as the task layer reports it: unknown (None) until the model is ready."""
    return DEFAULT if services.engines.state(engine).state == "ready" else None


def _resolve(services, session) -> bool:
    """What chat_task.resolve_system_prompt does (used where the task layer does not have it yet)."""
    if session.system_prompt is not None:
        return False
    default = chat_task.default_system_prompt(services, session.engine)
    if default is None:
        return False
    session.system_prompt = default
    return True


def _pending_box(page, app, gate):
    """Open the page while the model is held loading; the prompt box, empty with the pending hint."""
    _loading_until(app.services.engines, gate)
    page.goto(app.url)
    wait_in_page(page, page.locator("#model-status"), "the model loading", text="loading")
    page.get_by_text("Parameters").click()
    box = page.locator("#system-prompt textarea")
    wait_in_page(page, box, "the system prompt box", visible=True)
    assert box.input_value() == "" and box.get_attribute("placeholder") == PENDING
    return box


@pytest.fixture
def task_contract(monkeypatch):
    """chat_task's default system prompt as the test decides it (resolve_system_prompt where it is missing)."""
    def use(default):
        monkeypatch.setattr(chat_task, "default_system_prompt", default)
        if not hasattr(chat_task, "resolve_system_prompt"):
            monkeypatch.setattr(chat_task, "resolve_system_prompt", _resolve, raising=False)
    return use


def test_box_waits_for_the_default_then_sends_what_it_shows(page, tmp_path, task_contract):
    task_contract(_default_once_loaded)
    gate = threading.Event()
    with running_app(write_config(tmp_path), tmp_path / "data", wait_ready=False) as app:
        box = _pending_box(page, app, gate)
        gate.set()
        wait_until(lambda: box.input_value() == DEFAULT, "the model's default in the box")
        assert page.locator("#model-status .status-ready").first.is_visible()
        box.fill("")
        wait_until(lambda: box.get_attribute("placeholder") == NONE, "the no-prompt hint")
        page.locator("#chat-input textarea").fill("hello")
        page.locator("#chat-input textarea").press("Enter")
        wait_in_page(page, page.get_by_test_id("bot").last, "the reply", text="echo: hello")
        user = page.evaluate("localStorage.getItem('puyu-user')")
        conv = wait_until(lambda: app.services.store.list(user), "the conversation to be stored")[0]
        assert app.services.store.load(user, conv.id).system_prompt == ""  # emptied box: no system prompt
        page.locator("#new-chat").click()
        wait_until(lambda: box.input_value() == DEFAULT, "a new conversation's default")


def test_a_default_the_model_does_not_disclose_is_not_promised(page, tmp_path, task_contract):
    task_contract(lambda services, engine: None)
    gate = threading.Event()
    with running_app(write_config(tmp_path), tmp_path / "data", wait_ready=False) as app:
        box = _pending_box(page, app, gate)
        gate.set()
        wait_until(lambda: box.get_attribute("placeholder") == UNDISCLOSED, "the undisclosed-default hint")
        assert box.input_value() == ""
