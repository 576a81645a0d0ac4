"""The agent tab in Chromium: a run's tool steps show collapsed under their titles, one expands on a click
to its call and result; screenshots of both are kept."""

from __future__ import annotations

import io
import shutil
import time

import pytest
from PIL import Image

from studio.core.types import Message
from studio.tasks import agent as agent_task

from tests.browser.test_browser import ARTIFACTS, browser, page  # noqa: F401  (fixtures)
from tests.e2e.helpers import wait_for
from tests.e2e.test_agent_ui import ADD, _config
from tests.support.apps import running_app
from tests.support.scripted import scripted
from tests.support.waits import wait_in_page

pytestmark = pytest.mark.browser

PYTHON = ('<|action_start|><|interpreter|>\n```python\nx = (10 - 3) / 2\nprint("solved: x =", x)\n```'
          '<|action_end|>')


def _shot(pg, tmp_path, name: str):
    path = tmp_path / name
    pg.screenshot(path=str(path), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)  # kept with the other browser screenshots
    return path


def steady_height(locator, what: str) -> float:
    """Wait until the element has a height that stays the same across polls (its opening animation is over)."""
    last = [None]

    def same():
        box = locator.bounding_box()
        height = box["height"] if box else 0
        done = height > 20 and height == last[0]
        last[0] = height
        time.sleep(0.5)
        return height if done else None

    return wait_for(same, what)


def test_agent_steps_show_collapsed_and_expand_on_click(page, tmp_path):  # noqa: F811
    with running_app(_config(tmp_path), tmp_path / "data") as app:
        scripted(app.services).enqueue(f"I will solve it with Python.{PYTHON}", f"Let me check with add.{ADD}",
                                       "So x = 3.5 (and 2 + 40 = 42).")
        page.goto(app.url)
        page.get_by_role("tab", name="Agent · 智能体").click()
        wait_in_page(page, page.locator("#agent-protections"), "the sandbox line", empty=False)
        box = page.locator("#agent-input textarea")
        box.fill("已知 2x+3=10，求x")
        box.press("Enter")
        chat = page.locator("#agent-chatbot")
        wait_in_page(page, chat, "the final answer", text="So x = 3.5 (and 2 + 40 = 42).")
        groups = chat.locator(".thought-group")
        assert groups.count() == 2
        first = groups.nth(0)
        assert "python · x = (10 - 3) / 2" in first.inner_text()
        assert "add(a=2, b=40)" in groups.nth(1).inner_text()
        assert not first.get_by_text("solved: x = 3.5").is_visible()  # collapsed: title only
        collapsed = _shot(page, tmp_path, "agent-steps-collapsed.png")
        first.locator("[role=button]").first.click()
        wait_in_page(page, first, "the step to expand", text="solved: x = 3.5")
        steady_height(first.locator(".content"), "the expanded step to finish opening")
        assert first.get_by_text("solved: x = 3.5").is_visible()
        assert "I will solve it with Python." in first.inner_text()
        expanded = _shot(page, tmp_path, "agent-steps-expanded.png")
        assert collapsed.stat().st_size > 0 and expanded.stat().st_size > 0


def _stored_run(app, user: str) -> None:
    """An agent conversation with a figure, stored for `user` as the agent task stores one."""
    buffer = io.BytesIO()
    Image.new("RGB", (240, 160), (30, 120, 200)).save(buffer, format="PNG")
    figure = app.services.files.export("agent-step1-1.png", buffer.getvalue())
    call = Message.of("assistant", "Plot the data.")
    call.tool_call = {"kind": "interpreter", "name": "python", "code": "plt.plot([1, 2, 3])", "raw": ""}
    call.meta = {"status": "done", "seconds": 0.4}
    result = Message.of("tool", "[<matplotlib.lines.Line2D>]")
    result.name, result.meta = "interpreter", {"status": "done", "error": "", "images": [str(figure)],
                                               "tool": "python", "seconds": 0.4}
    session = agent_task.new_session(app.services)
    session.messages = [Message.of("user", "画一条线"), call, result, Message.of("assistant", "Here is the line.")]
    app.services.agent_store.save(user, session)


def test_a_stored_run_is_shown_again_on_load_with_its_figure(page, tmp_path):  # noqa: F811
    user = "ab" * 16
    with running_app(_config(tmp_path), tmp_path / "data") as app:
        _stored_run(app, user)
        page.add_init_script(f"localStorage.setItem('puyu-user', '{user}')")
        page.goto(app.url)
        page.get_by_role("tab", name="Agent · 智能体").click()
        chat = page.locator("#agent-chatbot")
        wait_in_page(page, chat, "the stored run", text="Here is the line.")
        step = chat.locator(".thought-group").first
        step.locator("[role=button]").first.click()
        steady_height(step.locator(".content"), "the step to open")
        img = step.locator("img")
        wait_for(lambda: img.count() and img.first.evaluate("i => i.complete && i.naturalWidth") == 240,
                 "the figure to load")
        _shot(page, tmp_path, "agent-figure-resumed.png")
