"""The terminal as a user sees it: start-up lines, the terminal chat on a pty (labels, line editing,
history, Ctrl-C), and one user for the terminal chat and the web."""

from __future__ import annotations

import io
import re
import stat
from pathlib import Path

import pytest
from gradio_client import Client

from studio.cli import run_cli
from studio.config import load_config
from studio.services import build_services
from studio.store.conversations import ConversationStore
from studio.tasks.users import local_user, login_user
from tests.e2e.helpers import reply_text
from tests.support.apps import EMBEDDED_CONFIG, free_port, running_app, write_config
from tests.support.studio_process import running_studio
from tests.support.terminal import CTRL_C, UP, Terminal, history_file
from tests.support.waits import wait_until


def _cli(tmp_path: Path, script: str = "echo") -> Terminal:
    cfg = write_config(tmp_path, model_path=f"script:{script}")
    return Terminal(["--cli", "--config", str(cfg), "--data-dir", str(tmp_path / "data")])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cli_first_reply_keeps_its_label_while_the_model_loads(tmp_path):
    term = _cli(tmp_path, "slowload")
    try:
        term.expect("User  > ")
        term.send(b"hello there\r")
        before = term.expect("Model > ")
        assert "Waiting for the model to load: chat" in before and "[Model chat ready in" in before
        reply = term.expect("User  > ")
        assert reply.startswith("echo: hello there"), reply  # nothing wrote over the label or the reply
        term.send(b"/exit\r")
        assert term.wait_exit() == 0
    finally:
        term.close()


def test_cli_up_recalls_a_line_typed_in_an_earlier_session(tmp_path):
    first = _cli(tmp_path)
    try:
        first.expect("User  > ")
        first.send(b"remember this line\r")
        first.expect("Model > ")
        first.expect("User  > ")
        first.send(b"/exit\r")
        assert first.wait_exit() == 0
    finally:
        first.close()
    history = history_file(tmp_path / "data")
    assert _mode(history) == 0o600 and "remember this line" in history.read_text()
    again = _cli(tmp_path)
    try:
        again.expect("User  > ")
        again.send(UP + UP + b"\r")  # /exit, then the line before it
        again.expect("Model > ")
        assert again.expect("User  > ").startswith("echo: remember this line")
        assert "^[[A" not in again.text()  # Up is a key, not text
    finally:
        again.close()


def test_cli_ctrl_c_stops_the_reply_and_at_the_prompt_leaves_cleanly(tmp_path):
    term = _cli(tmp_path, "slow")
    try:
        term.expect("User  > ")
        term.send(b"tell me a long story\r")
        term.expect("Model > ")
        term.expect("w3 ")
        term.send(CTRL_C)
        term.expect("[stopped]")
        term.expect("User  > ")
        term.send(CTRL_C)
        assert term.wait_exit() == 0
        assert "Traceback" not in term.text()
    finally:
        term.close()
    store = ConversationStore(tmp_path / "data" / "studio.db")
    [conv] = store.list(local_user())
    reply = store.load(local_user(), conv.id).messages[-1]
    assert reply.role == "assistant" and reply.text.startswith("w0 w1 w2 w3")
    assert len(reply.text.split()) < 200  # cut where Ctrl-C came, and kept


def test_cli_reads_piped_lines_and_remembers_them(tmp_path):
    import os
    import subprocess
    import sys

    from tests.support.apps import REPO

    cfg = write_config(tmp_path)
    r = subprocess.run([sys.executable, "-m", "tests.support.launch_scripted", "--cli", "--config", str(cfg),
                        "--data-dir", str(tmp_path / "data")], input="piped words\n/exit\n", cwd=REPO,
                       capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert r.returncode == 0, r.stderr
    assert "Model > echo: piped words\n" in r.stdout and "\x1b" not in r.stdout
    history = history_file(tmp_path / "data")
    assert _mode(history) == 0o600 and history.read_text().splitlines()[-2:] == ["piped words", "/exit"]


def _run_cli(config: Path, data_dir: Path, text: str, user_id=None) -> str:
    """The terminal chat over the same data dir, as a second process would run it."""
    out = io.StringIO()
    services = build_services(load_config(config), data_dir)
    try:
        assert run_cli(services, io.StringIO(text), out, user_id=user_id) == 0
    finally:
        services.close()
    return out.getvalue()


def test_a_terminal_conversation_is_in_the_web_list_of_the_local_user(tmp_path):
    cfg, data = write_config(tmp_path), tmp_path / "data"
    with running_app(cfg, data) as app:
        assert "Model > echo: typed in the terminal" in _run_cli(cfg, data, "typed in the terminal\n/exit\n")
        [conv] = app.services.store.list(local_user())
        client = Client(app.url, verbose=False)
        out = client.predict("", api_name="/resume")  # a page load
        assert out[0] == local_user()  # the web user is the terminal's user
        assert out[1]["choices"] == [["typed in the terminal", conv.id]] and out[1]["value"] == conv.id
        assert reply_text(out[2]) == "echo: typed in the terminal"
        chatbot = client.predict(conv.id, api_name="/select")[1]  # refused if the list did not hold it
        assert reply_text(chatbot) == "echo: typed in the terminal"


def test_with_a_login_the_terminal_stores_as_that_user(tmp_path):
    cfg, data = write_config(tmp_path), tmp_path / "data"
    with running_app(cfg, data, auth=[("alice", "pw-a"), ("bob", "pw-b")]) as app:
        _run_cli(cfg, data, "alice's question\n/exit\n", user_id=login_user("alice"))
        _run_cli(cfg, data, "the local user's question\n/exit\n")
        alice = Client(app.url, verbose=False, auth=("alice", "pw-a"))
        out = alice.predict("", api_name="/resume")
        assert reply_text(out[2]) == "echo: alice's question"
        assert [c.title for c in app.services.store.list("user:alice")] == ["alice's question"]
        bob = Client(app.url, verbose=False, auth=("bob", "pw-b"))
        assert bob.predict("", api_name="/resume")[1]["choices"] == []  # users with a login stay apart
        with pytest.raises(Exception, match="not found|not in the list of choices"):
            bob.predict(app.services.store.list("user:alice")[0].id, api_name="/select")


def test_a_browsers_old_conversations_move_to_the_local_user(tmp_path):
    from studio.core.session import ChatSession
    from studio.core.types import Message

    token = "0123456789abcdef" * 2  # what a page kept in localStorage before the local user
    with running_app(write_config(tmp_path), tmp_path / "data") as app:
        old = ChatSession(messages=[Message.of("user", "from before"), Message.of("assistant", "echo: from before")])
        app.services.store.save(token, old)
        client = Client(app.url, verbose=False)
        out = client.predict(token, api_name="/resume")
        assert out[0] == local_user() and out[1]["value"] == old.id and reply_text(out[2]) == "echo: from before"
        assert app.services.store.list(token) == [] and app.services.store.load(local_user(), old.id)


def test_bad_user_flag_is_refused_with_the_fix(tmp_path):
    import os
    import subprocess
    import sys

    from tests.support.apps import REPO

    r = subprocess.run([sys.executable, "launch.py", "--cli", "--user", " ", "--data-dir", str(tmp_path / "d")],
                       cwd=REPO, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert r.returncode == 1 and "is not a user name" in r.stderr and "--user alice" in r.stderr


BANNER = [r"", r"  Puyu Studio is running at http://127\.0\.0\.1:\d+", r"  From your own computer, .*",
          r"    ssh -CNg -L .*", r"  then browse to .*", r"  Library messages and warnings go to .*studio\.log",
          r"  Press Ctrl\+C to stop\."]
LOADING = re.compile(r"  Loading chat \d+% \(.*\) …")


@pytest.mark.slow
def test_after_the_url_only_the_studios_lines_then_model_ready(tmp_path):
    """The embedded model on a fresh cache (dequantised: the case that printed progress bars)."""
    out = tmp_path / "out.txt"
    with running_studio(EMBEDDED_CONFIG, tmp_path / "data", out) as studio:
        wait_until(lambda: "Model chat ready in" in out.read_text() or "failed to load" in out.read_text(),
                   "the model ready line", progress=lambda: out.stat().st_size, step=0.5)
        text = out.read_text()
        assert studio.proc.poll() is None
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if "Puyu Studio is running at" in line) - 1
    after = lines[start:]
    assert "\r" not in text and "it/s" not in text and "%|" not in text  # no progress bars, no redraws
    assert all(re.fullmatch(p, line) for p, line in zip(BANNER, after)), after[:len(BANNER)]
    rest = [line for line in after[len(BANNER):] if line]
    assert rest[-1].startswith("  Model chat ready in ") and rest[-1].endswith(" s"), rest
    assert all(LOADING.fullmatch(line) for line in rest[:-1]), rest  # a few plain lines, one per stage
    log = tmp_path / "data" / "logs" / "studio.log"
    assert _mode(log) == 0o600


def test_on_a_terminal_loading_is_one_line_redrawn_in_place(tmp_path):
    cfg = write_config(tmp_path, model_path="script:slowload")
    term = Terminal(["--config", str(cfg), "--data-dir", str(tmp_path / "data"), "--port", str(free_port())])
    try:
        term.expect("Press Ctrl+C to stop.")
        shown = term.expect("Model chat ready in")
        assert shown.count("\r\x1b[K  Loading chat") >= 2 and "\n  Loading" not in shown, shown
    finally:
        term.close()
