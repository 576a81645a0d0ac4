"""User tool files: read with ast (never imported by the server), and the code that calls a tool in a child."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from studio.tools.user_tools import ToolFileError, call_code, load_tool_file, load_tool_folder, read_call_output

GOOD = '''
"""My tools."""
from __future__ import annotations
import typing
from typing import Literal, Optional

OPENED = open("/tmp/should-never-exist-puyu", "w")  # proves the server never runs the file

def magic_maker(prompt: str, style: Literal["guofeng", "photo"] = "guofeng", n: int = 1) -> list:
    """Draw pictures from a prompt.

    Args:
        prompt: What to draw.
        style: The style.
        n: How many.
    """
    print("drawing", prompt)
    return [f"{style}:{prompt}"] * n

def weather(city: "str", days: typing.Optional[int] = None, units: str | None = "metric") -> dict:
    """Tomorrow's weather.

    :param city: The city, in English.
    """
    return {"city": city, "days": days}

def fails(x: int) -> int:
    """Always fails."""
    return 1 // x

def _helper(x):
    return x
'''


def write(tmp_path, source, name="tools.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def test_good_file_gives_specs_without_running_it(tmp_path):
    specs = {s.name: s for s in load_tool_file(write(tmp_path, GOOD))}
    assert sorted(specs) == ["fails", "magic_maker", "weather"]
    magic = specs["magic_maker"]
    assert magic.description == "Draw pictures from a prompt."
    assert magic.parameters["properties"]["style"] == {"type": "string", "enum": ["guofeng", "photo"],
                                                       "description": "The style.", "default": "guofeng"}
    assert magic.parameters["required"] == ["prompt"]
    weather = specs["weather"].parameters
    assert weather["properties"]["city"] == {"type": "string", "description": "The city, in English."}
    assert weather["properties"]["days"]["type"] == ["integer", "null"]
    assert weather["properties"]["units"] == {"type": ["string", "null"], "default": "metric"}
    assert weather["required"] == ["city"]
    import os
    assert not os.path.exists("/tmp/should-never-exist-puyu")


def test_syntax_error_names_path_and_line(tmp_path):
    path = write(tmp_path, 'def ok(x: int) -> int:\n    """Fine."""\n    return x\n\ndef broken(:\n    pass\n')
    with pytest.raises(ToolFileError) as info:
        load_tool_file(path)
    assert str(path) in info.value.message and "line 5" in info.value.message
    assert "py_compile" in info.value.hint


def test_missing_docstring_annotation_and_non_literal_default_are_each_reported(tmp_path):
    path = write(tmp_path, '''
        import os
        def no_doc(x: int) -> int:
            return x

        def no_type(x):
            """Has a docstring."""

        def computed(x: str = os.getcwd()) -> str:
            """Default computed at import."""

        def odd(x: set) -> str:
            """Sets are not JSON."""

        async def later(x: int) -> int:
            """Async."""
        ''')
    with pytest.raises(ToolFileError) as info:
        load_tool_file(path)
    message = info.value.message
    assert str(path) in message
    assert "line 3: function no_doc has no docstring" in message
    assert "line 6: parameter 'x' of function no_type has no type annotation" in message
    assert "line 9: the default of parameter 'x' of function computed is not a literal" in message
    assert "line 12:" in message and "(set) cannot be given to a model" in message
    assert "line 15: later is async" in message
    assert "start its name with _" in info.value.hint


def test_a_file_without_tools_and_a_missing_file_are_reported(tmp_path):
    with pytest.raises(ToolFileError, match="defines no tools"):
        load_tool_file(write(tmp_path, "def _private(x: int) -> int:\n    '''No.'''\n"))
    with pytest.raises(ToolFileError, match="cannot be read"):
        load_tool_file(tmp_path / "absent.py")


def run_child(code, cwd):
    done = subprocess.run([sys.executable, "-I", "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_call_code_runs_the_function_in_a_child_and_returns_json(tmp_path):
    path = write(tmp_path, GOOD.replace('OPENED = open("/tmp/should-never-exist-puyu", "w")', ""))
    out = run_child(call_code(path, "magic_maker", {"prompt": "月亮", "n": 2}), tmp_path)
    result = read_call_output(out, "magic_maker")
    assert result.ok, result.error
    assert result.text == 'drawing 月亮\n["guofeng:月亮", "guofeng:月亮"]'
    weather = read_call_output(run_child(call_code(path, "weather", {"city": "Shanghai"}), tmp_path))
    assert json.loads(weather.text) == {"city": "Shanghai", "days": None}


def test_call_code_reports_the_exception_and_the_line(tmp_path):
    path = write(tmp_path, GOOD.replace('OPENED = open("/tmp/should-never-exist-puyu", "w")', ""))
    result = read_call_output(run_child(call_code(path, "fails", {"x": 0}), tmp_path), "fails")
    assert not result.ok
    line = GOOD.splitlines().index("    return 1 // x") + 1
    assert result.error == (f"fails failed (line {line} of the tool file): "
                            "ZeroDivisionError: integer division or modulo by zero")
    wrong = read_call_output(run_child(call_code(path, "fails", {"y": 0}), tmp_path), "fails")
    assert "TypeError" in wrong.error and "'y'" in wrong.error


def test_call_code_leaves_nothing_in_a_stateful_namespace(tmp_path):
    path = write(tmp_path, GOOD.replace('OPENED = open("/tmp/should-never-exist-puyu", "w")', ""))
    code = call_code(path, "magic_maker", {"prompt": "x"}) + "print(sorted(k for k in dir() if 'puyu' in k))\n"
    assert run_child(code, tmp_path).splitlines()[-1] == "[]"


def test_output_without_a_result_line_is_an_error():
    result = read_call_output("partial output\nKilled", "magic_maker")
    assert not result.ok and "ended without a result" in result.error and result.text == "partial output\nKilled"


def test_huge_results_and_prints_are_capped_in_the_child(tmp_path):
    path = write(tmp_path, '''
        def flood(n: int) -> str:
            """Prints and returns a lot."""
            print("p" * n)
            return "r" * n
        ''')
    out = run_child(call_code(path, "flood", {"n": 1_000_000}, limit=100), tmp_path)
    assert len(out) < 1000
    result = read_call_output(out, "flood")
    assert result.ok and result.text == "p" * 100 + "\n" + "r" * 100 + " … (truncated)"


def test_a_tool_calling_sys_exit_is_a_failure_not_a_silent_end(tmp_path):
    path = write(tmp_path, '''
        import sys
        def leave(code: int) -> str:
            """Exits."""
            sys.exit(code)
        ''')
    result = read_call_output(run_child(call_code(path, "leave", {"code": 3}), tmp_path), "leave")
    assert result.error == "leave failed (line 5 of the tool file): SystemExit: 3"


def test_a_tool_folder_gives_each_tool_with_its_file(tmp_path):
    write(tmp_path, "def b_tool(x: int) -> int:\n    '''B.'''\n", "b.py")
    write(tmp_path, "def a_tool(x: int) -> int:\n    '''A.'''\n", "a.py")
    write(tmp_path, "broken(", "_skipped.py")
    (tmp_path / "notes.txt").write_text("not a tool")
    assert [(p.name, s.name) for p, s in load_tool_folder(tmp_path)] == [("a.py", "a_tool"), ("b.py", "b_tool")]


def test_a_tool_folder_refuses_a_name_in_two_files_and_a_missing_folder(tmp_path):
    write(tmp_path, "def same(x: int) -> int:\n    '''One.'''\n", "one.py")
    write(tmp_path, "def same(x: int) -> int:\n    '''Two.'''\n", "two.py")
    with pytest.raises(ToolFileError, match=r"The tool same is defined in both .*one\.py and .*two\.py"):
        load_tool_folder(tmp_path)
    with pytest.raises(ToolFileError, match="does not exist"):
        load_tool_folder(tmp_path / "nope")
