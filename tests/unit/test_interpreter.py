"""The python tool's contract: its schema, arguments, uploads, images, results and refusal to run unconfined."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from studio.errors import InputError
from studio.tools.interpreter import FRESH, Interpreter, capped, safe_name
from studio.tools.sandbox import Limits, Sandbox, SandboxUnavailable
from tests.support.waits import wait_until

NEVER = threading.Event()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
FAKE_PYPLOT = f'''
FIGURES = [1, 2]
class Figure:
    def savefig(self, buffer, format):
        assert format == "png"
        buffer.write({PNG!r})
def get_fignums(): return list(FIGURES)
def figure(number): return Figure()
def close(which): FIGURES.clear()
'''


@pytest.fixture
def tool(tmp_path):
    """An interpreter in a folder under a fake data dir."""
    interpreter = Interpreter(tmp_path / "data" / "agent" / "c1", Limits(wall_s=300, cpu_s=300))
    yield interpreter
    interpreter.close()


def test_the_spec_is_an_openai_function_named_python(tool):
    entry = tool.spec.openai()
    assert entry["function"]["name"] == "python"
    assert entry["function"]["parameters"]["required"] == ["code"]


def test_code_comes_as_a_string_or_a_json_object(tool):
    assert tool.run("6 * 7", NEVER).text == "42"
    assert tool.run({"code": "6 * 8"}, NEVER).text == "48"


@pytest.mark.parametrize("arguments", [{}, {"code": 3}, "   ", None, ["print(1)"]])
def test_missing_or_wrong_arguments_are_an_error_result(tool, arguments):
    result = tool.run(arguments, NEVER)
    assert "needs code" in result.error and '{"code"' in result.error
    assert tool.sandbox.child is None  # nothing was started for it


def test_a_syntax_error_is_reported_and_the_next_call_works(tool):
    result = tool.run("def broken(:\n  pass", NEVER)
    assert "SyntaxError" in result.error and "<cell 1>" in result.error
    assert "studio/tools" not in result.error and "ast.py" not in result.error
    assert tool.run("1 + 1", NEVER).text == "2"


def test_stderr_comes_back_with_stdout(tool):
    result = tool.run("import sys\nprint('out')\nprint('warn', file=sys.stderr)", NEVER)
    assert result.text == "out\nwarn"


def test_an_uploaded_csv_is_copied_in_and_named_to_the_code(tool, tmp_path):
    upload = tmp_path / "upload-7f3a.tmp"
    upload.write_text("x,y\n1,2\n3,4\n")
    name = tool.add_file(upload, "sales data.csv")
    assert name == "sales_data.csv"
    assert (tool.folder / name).read_text() == upload.read_text()
    code = f"import csv\nrows = list(csv.DictReader(open({name!r})))\nsum(int(r['y']) for r in rows)"
    assert tool.run(code, NEVER).text == "6"
    assert tool.add_file(upload, "sales data.csv") == "sales_data_2.csv"  # an earlier upload is kept


def test_an_upload_name_cannot_leave_the_folder(tool, tmp_path):
    upload = tmp_path / "u"
    upload.write_bytes(b"png")
    name = tool.add_file(upload, "../../.ssh/authorized_keys")
    assert name == "authorized_keys" and (tool.folder / name).is_file()
    assert safe_name("..") == "upload" and safe_name(".bashrc") == "bashrc"


def test_an_upload_never_writes_through_a_link_in_the_folder(tool, tmp_path):
    tool.folder.mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    (tool.folder / "data.csv").symlink_to(outside)  # dangling: exists() would say False
    upload = tmp_path / "u.csv"
    upload.write_text("a,b")
    assert tool.add_file(upload, "data.csv") == "data_2.csv"
    assert not outside.exists() and (tool.folder / "data_2.csv").read_text() == "a,b"


def test_a_missing_upload_is_an_input_error(tool, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        tool.add_file(tmp_path / "gone.csv", "gone.csv")


def test_the_folder_is_private(tool):
    tool.protections()
    assert tool.folder.stat().st_mode & 0o777 == 0o700


def test_pyplot_figures_come_back_as_png_images(tool):
    package = tool.folder / "matplotlib"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "pyplot.py").write_text(FAKE_PYPLOT)
    result = tool.run("import sys\nsys.path.insert(0, '.')\nimport matplotlib.pyplot as plt", NEVER)
    assert result.ok, result.error
    assert result.images == (PNG, PNG)
    assert tool.run("1", NEVER).images == ()  # shown figures are closed


def test_without_matplotlib_there_are_no_images(tool):
    result = tool.run("try:\n    import matplotlib\nexcept ImportError:\n    print('none')", NEVER)
    if result.text != "none":
        pytest.skip("matplotlib is installed here")
    assert result.images == ()


def test_capped_says_how_much_was_left_out():
    assert capped("abc", 10) == "abc"
    assert capped("abcdef", 3) == "abc\n… [output truncated: 3 more characters not shown]"
    assert capped("abc", 10, dropped=5).endswith("5 more characters not shown]")


def test_an_unconfined_child_is_refused_with_the_reason(tmp_path):
    sandbox = Sandbox(tmp_path / "f")
    sandbox.protections = ["separate process", "rlimits"]
    sandbox.missing = {"seccomp": "libseccomp.so.2: cannot open shared object file"}
    with pytest.raises(SandboxUnavailable) as caught:
        sandbox.refuse_if_unsafe()
    assert "no programs (seccomp)" in caught.value.message and "no network" in caught.value.message
    assert "libseccomp.so.2: cannot open" in caught.value.message
    assert "apt install libseccomp2" in caught.value.hint


def test_close_removes_nothing_and_a_later_call_starts_afresh(tool):
    tool.run("open('keep.txt', 'w').write('k')", NEVER)
    tool.close()
    assert not tool.sandbox.alive and (tool.folder / "keep.txt").exists()
    assert tool.run("open('keep.txt').read()", NEVER).text == "'k'"


def test_a_cancel_before_the_start_stops_without_running(tool):
    cancel = threading.Event()
    cancel.set()
    result = tool.run("open('ran', 'w')", cancel)
    assert result.error.startswith("Stopped while the Python interpreter was starting.")
    assert not Path(tool.folder, "ran").exists()


def test_a_child_killed_between_calls_is_replaced_and_says_so(tool):
    tool.run("kept = 1", NEVER)
    os.kill(tool.sandbox.pid, signal.SIGKILL)
    wait_until(lambda: not tool.sandbox.alive, "the child to die")
    result = tool.run("'kept' in globals()", NEVER)
    assert result.text == f"{FRESH}\nFalse"


def test_close_during_a_run_ends_it_with_an_error_result(tool):
    results = []
    worker = threading.Thread(target=lambda: results.append(
        tool.run("open('started', 'w').close()\nwhile True: pass", NEVER)))
    worker.start()
    wait_until(lambda: (tool.folder / "started").exists(), "the run to start")
    tool.close()
    worker.join(timeout=600)
    assert results and "The interpreter ended" in results[0].error
    assert tool.run("2 + 2", NEVER).text.endswith("4")


def test_a_folder_that_cannot_be_made_is_an_error_result(tmp_path):
    (tmp_path / "data").write_text("a file where the folder should go")
    tool = Interpreter(tmp_path / "data" / "agent" / "c1")
    result = tool.run("1", NEVER)
    assert result.error.startswith("The Python interpreter could not start:") and "data folder" in result.error


def test_a_huge_traceback_keeps_its_end(tool):
    result = tool.run("raise ValueError('v' * 100_000 + ' the end')", NEVER)
    assert result.error.startswith("… [traceback shortened]") and result.error.rstrip().endswith("v the end")
    assert len(result.error) < 20_000
