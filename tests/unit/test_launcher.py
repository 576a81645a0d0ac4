"""launch.py's checks that run before any UI: ports, auth, tunnel hint."""

from __future__ import annotations

import socket

import pytest

from studio.errors import StudioError
from studio.launcher import check_port, parse_auth, tunnel_hint
from tests.support.ports import time_wait_port, time_wait_ports


def test_busy_port_names_port_and_fix():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(StudioError) as e:
            check_port("127.0.0.1", port)
    assert f"Port {port}" in e.value.message and "already in use" in e.value.message
    assert f"--port {port + 1}" in e.value.hint


def test_free_port_and_invalid_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check_port("127.0.0.1", port)
    with pytest.raises(StudioError, match="not a valid port"):
        check_port("127.0.0.1", 70000)


def test_auth_parsing_and_share_never_open():
    assert parse_auth("alice:s3:cret", share=False) == (("alice", "s3:cret"), False)
    assert parse_auth(None, share=False) == (None, False)
    (user, password), generated = parse_auth(None, share=True)
    assert generated and user == "puyu" and len(password) >= 12
    assert parse_auth(None, share=True)[0][1] != password  # fresh each time
    for bad in ("alice", ":pw", "alice:"):
        with pytest.raises(StudioError, match="USER:PASS"):
            parse_auth(bad, share=True)


def test_tunnel_hint():
    assert tunnel_hint("127.0.0.1", 6006).startswith("ssh -CNg -L 6006:127.0.0.1:6006 ")
    assert "-L 7000:127.0.0.1:7000" in tunnel_hint("0.0.0.0", 7000)


def test_time_wait_socket_of_a_dead_server_is_not_in_use():
    port = time_wait_port()
    assert port in time_wait_ports()  # the case being tested really exists
    check_port("127.0.0.1", port)  # a restart right after a crash is not refused


def test_listener_after_time_wait_still_refused_with_todays_message():
    port = time_wait_port()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        with pytest.raises(StudioError) as e:
            check_port("127.0.0.1", port)
    assert e.value.message == f"Port {port} on 127.0.0.1 is already in use (another studio or program is listening)."


def test_gradio_temp_dir_is_private_and_a_planted_link_is_refused(tmp_path, monkeypatch):
    import os
    import stat

    from studio.launcher import prepare_environment

    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    prepare_environment(tmp_path / "data")
    made = tmp_path / "data" / "tmp" / "gradio"
    assert os.environ["GRADIO_TEMP_DIR"] == str(made)
    assert stat.S_IMODE(made.stat().st_mode) == 0o700 and stat.S_IMODE(made.parent.stat().st_mode) == 0o700
    monkeypatch.delenv("GRADIO_TEMP_DIR")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    (tmp_path / "other" / "tmp").mkdir(parents=True, mode=0o700)
    os.symlink(shared, tmp_path / "other" / "tmp" / "gradio")
    with pytest.raises(StudioError, match="gradio: it is a symbolic link"):
        prepare_environment(tmp_path / "other")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # the link's target was not chmod-ed
    assert "GRADIO_TEMP_DIR" not in os.environ


def test_new_data_dir_is_private_and_an_open_one_gets_a_warning(tmp_path, monkeypatch, capsys):
    import os
    import stat

    from studio.launcher import prepare_environment

    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    prepare_environment(tmp_path / "new" / "data")
    assert stat.S_IMODE((tmp_path / "new" / "data").stat().st_mode) == 0o700
    assert "warning" not in capsys.readouterr().err
    monkeypatch.delenv("GRADIO_TEMP_DIR")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    prepare_environment(shared)
    err = capsys.readouterr().err
    assert f"warning: {shared} can be read by other users (mode 755); run `chmod 700 {shared}`" in err
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # the user's own choice is not changed


def test_gradio_queue_summarises_its_events_rarely_unless_the_user_says_otherwise(tmp_path, monkeypatch):
    from gradio.queueing import Queue

    from studio.launcher import prepare_environment

    def frequency() -> int:
        return Queue(live_updates=False, concurrency_count=None, update_intervals=1, max_size=None,
                     blocks=None, default_concurrency_limit=1).ANAYLTICS_CACHE_FREQUENCY

    for name in ("GRADIO_ANALYTICS_CACHE_FREQUENCY", "GRADIO_TEMP_DIR"):
        monkeypatch.setenv(name, "")  # so that the test's end restores what was there (or nothing)
        monkeypatch.delenv(name)
    assert frequency() == 1  # gradio's default: a pandas summary of up to 10 000 events after every event
    prepare_environment(tmp_path / "data")
    assert frequency() == 1000
    monkeypatch.setenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", "7")
    monkeypatch.delenv("GRADIO_TEMP_DIR")
    prepare_environment(tmp_path / "data")
    assert frequency() == 7
