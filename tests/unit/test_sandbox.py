"""The interpreter's sandbox, tried from inside with real child processes: each escape is stopped, and the
next call works."""

from __future__ import annotations

import ast
import os
import socket
import sqlite3
import sys
import threading

import pytest

from studio.tools.confine import python_paths
from studio.tools.interpreter import FRESH, Interpreter
from studio.tools.sandbox import Limits
from tests.support.waits import wait_until

NEVER = threading.Event()
ROOMY = Limits(wall_s=300, cpu_s=300)  # normal calls: far above what a loaded machine needs


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """A fake studio data dir (with a database), a fake HOME with ~/.ssh, and the interpreter's folder."""
    data, home = tmp_path / "data", tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    monkeypatch.setenv("HOME", str(home))
    data.mkdir()
    with sqlite3.connect(data / "studio.db") as db:
        db.execute("create table secrets (v text)")
        db.execute("insert into secrets values ('conversation text')")
    db.close()
    return {"data": data, "home": home, "folder": data / "agent" / "conv-1"}


def make(layout, limits: Limits = ROOMY) -> Interpreter:
    """An interpreter in the layout's folder (closed by the caller's fixture)."""
    return Interpreter(layout["folder"], limits)


@pytest.fixture
def interp(layout):
    """A started interpreter with roomy limits."""
    tool = make(layout)
    tool.protections()
    yield tool
    tool.close()


def need(tool: Interpreter, protection: str) -> None:
    """Skip (with the reason the child gave) when this machine cannot apply `protection`."""
    if protection not in tool.protections():
        pytest.skip(f"{protection} is not available here: {tool.sandbox.missing}")


def run(tool: Interpreter, code: str, cancel: threading.Event = NEVER):
    """One call of the tool."""
    return tool.run({"code": code}, cancel)


def assert_next_call_works(tool: Interpreter, fresh: bool) -> None:
    """The interpreter answers again; after a restart it says the variables were lost."""
    result = run(tool, "21 * 2")
    assert result.ok, result.error
    assert result.text.endswith("42")
    assert result.text.startswith(FRESH) is fresh


def test_the_essential_protections_are_active(interp):
    active = interp.protections()
    for name in ("separate process", "rlimits", "no network (seccomp)", "no programs (seccomp)"):
        assert name in active
    assert interp.sandbox.pid != os.getpid()
    assert interp.folder.stat().st_mode & 0o777 == 0o700


def test_a_computation_runs_in_the_child(interp):
    result = run(interp, "import os, math\nprint(math.factorial(10))\nos.getpid()")
    assert result.ok, result.error
    printed, pid = result.text.split("\n")
    assert printed == "3628800"
    assert int(pid) == interp.sandbox.pid != os.getpid()
    assert result.seconds > 0


def test_variables_survive_between_calls(interp):
    assert run(interp, "x = 40\ndef add(a): return a + x").ok
    assert run(interp, "x += 1").ok
    assert run(interp, "add(1)").text == "42"


def test_the_last_expression_value_is_shown_and_none_is_not(interp):
    assert run(interp, "y = [1, 2]\ny + [3]").text == "[1, 2, 3]"
    assert run(interp, "print('hi')\nNone").text == "hi"
    assert run(interp, "y.append(3)").text == ""
    assert run(interp, "_").text == "[1, 2, 3]"


def test_an_error_is_a_traceback_of_the_cell_and_state_survives(interp):
    run(interp, "kept = 'yes'")
    result = run(interp, "print('before')\n1 / 0")
    assert "ZeroDivisionError" in result.error and '<cell 2>", line 2' in result.error
    assert "studio/tools" not in result.error
    assert result.text == "before"
    assert run(interp, "kept").text == "'yes'"


def test_an_endless_loop_is_stopped_at_the_wall_clock_limit(layout):
    tool = make(layout, Limits(wall_s=3, cpu_s=300))
    try:
        run(tool, "kept = 1")
        result = run(tool, "while True: pass")
        assert "Stopped" in result.error and "3 s time limit" in result.error
        assert "variables from earlier calls are lost" in result.error
        assert_next_call_works(tool, fresh=True)
        assert "NameError" in run(tool, "kept").error
    finally:
        tool.close()


def test_an_endless_loop_is_stopped_at_the_cpu_budget(layout):
    tool = make(layout, Limits(wall_s=600, cpu_s=2))
    try:
        result = run(tool, "while True: pass")
        assert "more than its 2 s of CPU time" in result.error
        assert_next_call_works(tool, fresh=True)
        # the budget is per call: later calls get their own 2 s
        assert run(tool, "sum(range(10**6))").text == str(sum(range(10**6)))
    finally:
        tool.close()


def test_allocating_10_gb_is_a_memory_error_and_the_state_survives(interp):
    run(interp, "kept = 'still here'")
    result = run(interp, "big = bytearray(10 * 1024**3)")
    assert "MemoryError" in result.error
    assert run(interp, "kept").text == "'still here'"
    assert_next_call_works(interp, fresh=False)


def test_fork_is_refused(interp):
    result = run(interp, "import os\nos.fork()")
    assert "PermissionError" in result.error
    assert_next_call_works(interp, fresh=False)


def test_os_system_starts_no_program(interp):
    result = run(interp, "import os\nos.system('echo hi > started.txt')")
    assert result.ok and int(result.text) != 0  # the shell could not be started
    assert not (interp.folder / "started.txt").exists()
    assert_next_call_works(interp, fresh=False)


def test_subprocess_and_exec_are_refused(interp):
    result = run(interp, "import subprocess\nsubprocess.run(['echo', 'hi'], capture_output=True)")
    assert "PermissionError" in result.error and "hi" not in result.text
    result = run(interp, "import os\nos.execv('/bin/echo', ['echo', 'hi'])")
    assert "PermissionError" in result.error
    assert_next_call_works(interp, fresh=False)


def test_threads_still_work(interp):
    code = ("import threading\nout = []\nts = [threading.Thread(target=out.append, args=(i,)) for i in range(4)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\nsorted(out)")
    assert run(interp, code).text == "[0, 1, 2, 3]"


def test_a_local_listener_cannot_be_reached(interp):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.settimeout(0.5)
    try:
        result = run(interp, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=10)")
        assert "PermissionError" in result.error or "OSError" in result.error
        result = run(interp, f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/', timeout=10)")
        assert "URLError" in result.error or "PermissionError" in result.error
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing ever connected
    finally:
        listener.close()
    assert_next_call_works(interp, fresh=False)


def test_writing_outside_the_folder_is_refused(interp, layout):
    need(interp, "filesystem (landlock)")
    outside = layout["data"] / "planted.txt"
    result = run(interp, f"open({str(outside)!r}, 'w').write('x')")
    assert "PermissionError" in result.error
    assert not outside.exists()
    result = run(interp, "open('inside.txt', 'w').write('fine')")
    assert result.ok and (interp.folder / "inside.txt").read_text() == "fine"


def test_the_data_dir_and_ssh_keys_cannot_be_read(interp, layout):
    need(interp, "filesystem (landlock)")
    for path in (layout["data"] / "studio.db", layout["home"] / ".ssh" / "id_ed25519"):
        result = run(interp, f"open({str(path)!r}, 'rb').read()")
        assert "PermissionError" in result.error, result
        assert "conversation text" not in result.text and "PRIVATE" not in result.text
    result = run(interp, f"import os\nos.listdir({str(layout['data'])!r})")
    assert "PermissionError" in result.error
    assert_next_call_works(interp, fresh=False)


def test_files_outside_cannot_be_chmodded_or_chowned(interp, layout):
    database = layout["data"] / "studio.db"
    mode = database.stat().st_mode
    for code in (f"import os\nos.chmod({str(database)!r}, 0o777)", f"import os\nos.chown({str(database)!r}, 1, 1)"):
        assert "PermissionError" in run(interp, code).error
    assert database.stat().st_mode == mode and database.stat().st_uid == os.getuid()


def test_links_and_device_nodes_cannot_be_made(interp, layout):
    need(interp, "filesystem (landlock)")
    assert "PermissionError" in run(interp, "import os\nos.symlink('/etc/passwd', 'passwd')").error
    error = run(interp, f"os.link({str(layout['data'] / 'studio.db')!r}, 'db')").error
    assert "PermissionError" in error or "Invalid cross-device link" in error  # Landlock answers EXDEV here
    assert "PermissionError" in run(interp, "import stat\nos.mknod('disk', stat.S_IFBLK | 0o600, os.makedev(8, 0))").error
    assert not any(os.path.lexists(interp.folder / n) for n in ("passwd", "db", "disk"))
    assert run(interp, "os.mkdir('sub'); open('sub/f', 'w').write('ok')").ok  # ordinary files and folders are fine


def test_the_code_holds_no_capabilities(interp):
    need(interp, "no capabilities")
    code = "dict(l.split(':') for l in open('/proc/self/status').read().splitlines() if l.startswith('Cap'))"
    caps = {k: int(v.strip(), 16) for k, v in ast.literal_eval(run(interp, code).text).items()}
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapAmb"] == 0
    if os.geteuid() == 0:
        assert caps["CapBnd"] == 0


def test_an_import_path_holding_the_data_dir_is_not_made_readable(tmp_path):
    checkout, folder = tmp_path / "checkout", tmp_path / "checkout" / "data" / "agent" / "c1"
    folder.mkdir(parents=True)
    (tmp_path / "lib").mkdir()
    readable = python_paths([str(checkout), str(tmp_path / "lib"), str(tmp_path / "missing")], [str(folder)])
    assert str(tmp_path / "lib") in readable
    assert str(checkout) not in readable and str(tmp_path / "missing") not in readable
    assert sys.base_prefix in readable


def test_the_server_environment_is_not_passed_on(layout, monkeypatch):
    monkeypatch.setenv("PUYU_TEST_TOKEN", "hf_secret")
    tool = make(layout)
    try:
        result = run(tool, "import os\nsorted(os.environ)")
        assert result.ok and "PUYU_TEST_TOKEN" not in result.text
        assert run(tool, "os.environ['HOME']").text == repr(str(layout["folder"]))
    finally:
        tool.close()


def test_a_big_file_is_refused(interp):
    result = run(interp, "open('big.bin', 'wb').write(b'0' * (20 * 1024**2))")
    assert "File too large" in result.error
    assert_next_call_works(interp, fresh=False)


def test_the_limits_cannot_be_raised_from_inside(interp):
    # the CPU budget's hard limit is unlimited, so only the filter stops the code lifting its soft limit
    code = "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY,) * 2)"
    assert "not allowed" in run(interp, code).error
    assert "ValueError" in run(interp, "resource.setrlimit(resource.RLIMIT_AS, (-1, -1))").error
    assert "MemoryError" in run(interp, "bytearray(2 * 1024**3)").error


def test_signals_to_processes_outside_are_refused(interp):
    need(interp, "no signals outside (landlock)")
    # SIGWINCH is ignored by default, so even a failure of the sandbox would not harm the test run
    result = run(interp, f"import os, signal\nos.kill({os.getpid()}, signal.SIGWINCH)")
    assert "PermissionError" in result.error


def test_megabytes_of_output_are_truncated(interp):
    result = run(interp, "for _ in range(100): print('x' * 50_000)")
    assert result.ok
    assert len(result.text) < 20_000
    assert "output truncated" in result.text and "more characters not shown" in result.text
    result = run(interp, "'y' * 5_000_000")
    assert len(result.text) < 20_000 and "output truncated" in result.text
    assert_next_call_works(interp, fresh=False)


def test_stop_during_a_long_run_kills_the_child(interp):
    pid, cancel, results = interp.sandbox.pid, threading.Event(), []
    worker = threading.Thread(target=lambda: results.append(
        run(interp, "open('started', 'w').close()\nwhile True: pass", cancel)))
    worker.start()
    wait_until(lambda: (interp.folder / "started").exists(), "the long run to start")
    cancel.set()
    worker.join(timeout=600)
    assert results and "Stopped" in results[0].error and "cancelled" in results[0].error
    wait_until(lambda: not pid_exists(pid), f"child {pid} to be gone")
    assert_next_call_works(interp, fresh=True)
    assert interp.sandbox.pid != pid


def test_garbage_written_on_the_reply_pipe_is_a_clear_error(interp):
    # the child's end of the reply pipe is the fd number in its argv (after -c, the code root, the request fd)
    result = run(interp, "import os, sys\nos.write(int(sys.argv[3]), b'\\xff' * 64)")
    assert "The interpreter ended" in result.error and "could not be read" in result.error
    assert_next_call_works(interp, fresh=True)


def test_a_segfault_is_a_clear_error_and_the_next_call_works(interp):
    run(interp, "kept = 1")
    result = run(interp, "import ctypes\nctypes.string_at(0)")
    assert "The interpreter ended" in result.error and "SIGSEGV" in result.error
    assert "variables from earlier calls are lost" in result.error
    assert_next_call_works(interp, fresh=True)


def test_exit_does_not_end_the_interpreter(interp):
    run(interp, "kept = 1")
    assert "SystemExit" in run(interp, "exit()").error
    assert run(interp, "kept").text == "1"


def test_close_kills_the_child_and_keeps_the_folder(interp):
    run(interp, "open('result.csv', 'w').write('a,b')")
    pid = interp.sandbox.pid
    interp.close()
    wait_until(lambda: not pid_exists(pid), f"child {pid} to be gone")
    assert (interp.folder / "result.csv").read_text() == "a,b"


def pid_exists(pid: int) -> bool:
    """True while a process with this id exists (a reaped child no longer does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
