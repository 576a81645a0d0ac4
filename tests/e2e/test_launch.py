"""launch.py as a user runs it: exit codes and messages, share without auth, the terminal chat."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request

import pytest

from studio.core.session import ChatSession
from studio.store.conversations import ConversationStore
from studio.tasks.users import local_user
from tests.support.apps import REPO, free_port
from tests.support.waits import run_until_quiet


def run_launch(args, tmp_path, cache_dir=None, stdin=None):
    """launch.py to its exit; a run that goes silent for minutes is killed, a slow one is waited for."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if cache_dir:
        env["PUYU_CACHE_DIR"] = str(cache_dir)
    return run_until_quiet([sys.executable, "launch.py", "--data-dir", str(tmp_path / "data"), *args],
                           cwd=REPO, env=env, stdin=stdin)


def test_bad_config_exits_2_before_ui(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("engines:\n  chat:\n    family: internlm4\n    model_path: /x\n")
    r = run_launch(["--config", str(cfg)], tmp_path)
    assert r.returncode == 2
    assert "engines.chat.family: 'internlm4' unknown; known:" in r.stderr
    assert "Running" not in r.stdout


def test_busy_port_exits_with_clear_message(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_launch(["--port", str(port)], tmp_path)
    assert r.returncode == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in r.stderr
    assert f"--port {port + 1}" in r.stderr


def test_bad_auth_flag(tmp_path):
    r = run_launch(["--auth", "nocolon"], tmp_path)
    assert r.returncode == 1 and "USER:PASS" in r.stderr


def _wait_for_line(proc, needle):
    """The lines printed up to the one containing `needle` (each line read is progress; no deadline)."""
    lines = []
    while True:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not printed; got:\n{''.join(lines)}")


def test_share_without_auth_generates_login_and_keeps_serving(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "launch.py", "--share", "--port", str(port),
                             "--data-dir", str(tmp_path / "data")], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        lines = _wait_for_line(proc, "Press Ctrl+C")
        out = "".join(lines)
        assert f"http://127.0.0.1:{port}" in out and f"ssh -CNg -L {port}:127.0.0.1:{port}" in out
        assert "Login: puyu / " in out and "generated for --share" in out
        # This machine is offline: the share link fails, the local server keeps serving behind the login.
        assert "could not be created" in out or "Public link (login required)" in out
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/info", timeout=10)
        assert e.value.code in (401, 403)
        password = out.split("Login: puyu / ")[1].split()[0]
        assert _login(port, "puyu", "wrong") is False
        assert _login(port, "puyu", password) is True  # and then the API answers
    finally:
        proc.terminate()
        proc.wait(30)


def _login(port: int, user: str, password: str) -> bool:
    import http.cookiejar
    import urllib.parse

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    form = urllib.parse.urlencode({"username": user, "password": password}).encode()
    try:
        opener.open(f"http://127.0.0.1:{port}/login", data=form, timeout=10)
    except urllib.error.HTTPError:
        return False
    return opener.open(f"http://127.0.0.1:{port}/gradio_api/info", timeout=10).status == 200


def test_cli_streams_keeps_spaces_and_history(tmp_path, embedded_cache_dir):
    stdin = "/system You are a concise assistant.\nName three colours.\nNow name three animals.\n/exit\n"
    r = run_launch(["--cli"], tmp_path, cache_dir=embedded_cache_dir, stdin=stdin)
    assert r.returncode == 0, r.stderr[-2000:]
    # A reply that reaches max new tokens is followed by a notice, which is the CLI's, not the reply's.
    replies = [part.split("\nUser  >")[0].replace("\n[reply cut at max new tokens]", "")
               for part in r.stdout.split("Model > ")[1:]]
    assert len(replies) == 2 and all(len(x.strip()) > 5 for x in replies), r.stdout
    assert all(" " in x.strip() for x in replies)  # the lesson's cli_demo stripped every space
    store = ConversationStore(tmp_path / "data" / "studio.db")
    user = local_user()  # the web's user too (no --auth): the chats show in its sidebar
    assert _users(store) == [user]
    session: ChatSession = store.load(user, store.list(user)[0].id)
    assert [m.role for m in session.messages] == ["user", "assistant", "user", "assistant"]
    assert session.system_prompt == "You are a concise assistant."
    assert session.messages[1].text.strip() == replies[0].strip()


def _users(store: ConversationStore):
    import sqlite3

    with sqlite3.connect(store.db_path) as db:
        return [row[0] for row in db.execute("SELECT DISTINCT user_id FROM conversations")]


def test_missing_model_path_says_where_it_looked(tmp_path):
    r = run_launch(["--model-path", str(tmp_path / "no-such-model")], tmp_path)
    assert r.returncode == 2
    assert f"Model path not found: {tmp_path / 'no-such-model'}" in r.stderr and "download" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a model")
    r = run_launch(["--model-path", str(empty)], tmp_path)
    assert r.returncode == 2 and f"{empty} does not hold a model" in r.stderr


def _start_scripted(tmp_path, port: int) -> subprocess.Popen:
    from tests.support.apps import write_config

    cfg = write_config(tmp_path)
    return subprocess.Popen([sys.executable, "-m", "tests.support.launch_scripted", "--config", str(cfg),
                             "--port", str(port), "--data-dir", str(tmp_path / "data")], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def test_restart_after_kill_9_with_a_client_connected_starts_at_once(tmp_path):
    from tests.support.ports import time_wait_ports

    port = free_port()
    first = _start_scripted(tmp_path, port)
    try:
        _wait_for_line(first, "Press Ctrl+C")
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        client.sendall(b"GET /gradio_api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert client.recv(12).startswith(b"HTTP/1.1")  # a live keep-alive connection to the server
        first.kill()
        first.wait(30)
        while client.recv(65536):  # the dead server's end closes first, so it is the one in TIME-WAIT
            pass
        client.close()
    finally:
        if first.poll() is None:
            first.kill()
        first.stdout.close()
    assert port in time_wait_ports()
    second = _start_scripted(tmp_path, port)
    try:
        lines = _wait_for_line(second, "Press Ctrl+C")
        assert "already in use" not in "".join(lines)
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/info", timeout=30).status == 200
    finally:
        second.terminate()
        second.wait(30)
        second.stdout.close()
