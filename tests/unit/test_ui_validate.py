"""The checks that run on raw event inputs before Gradio preprocesses them (studio/ui/validate.py)."""

from __future__ import annotations

import gradio as gr
import pytest

from studio.errors import InputError
from studio.ui.validate import clean_input

SLIDER = gr.Slider(0, 200, value=50, step=1)
FLOAT = gr.Slider(0.0, 2.0, value=0.7, step=0.05)
SEED = gr.Number(-1, precision=0, minimum=-1)
CHOICE = gr.Dropdown(["a", "b"], value="a")


@pytest.mark.parametrize("block, value", [(SLIDER, 0), (SLIDER, 200), (SLIDER, 7.0), (FLOAT, 1.3), (SEED, None),
                                          (SEED, 2**40), (CHOICE, "b"), (CHOICE, None), (gr.Checkbox(), True)])
def test_good_values_pass_unchanged(block, value):
    assert clean_input("x", block, value) == (value, 0)


@pytest.mark.parametrize("block, value, message", [
    (SLIDER, "many", "x must be a whole number; got 'many'"),
    (SLIDER, True, "x must be a whole number; got True"),
    (SLIDER, 201, "x is 201; it must be between 0 and 200"),
    (SLIDER, None, "x must be a whole number; got None"),
    (FLOAT, float("nan"), "x must be a number; got nan"),
    (SEED, -2, "x is -2; it must be at least -1"),
    (CHOICE, "c", "x: 'c' is not in the list of choices"),
    (CHOICE, ["a"], "x must be one of the choices"),
    (gr.Checkbox(), "no", "x must be true or false"),
    (gr.Textbox(), 5, "x must be text; got 5"),
    (gr.MultimodalTextbox(), "q", "x must be {'text': str, 'files': [...]}"),
])
def test_bad_values_get_a_message(block, value, message):
    with pytest.raises(InputError) as err:
        clean_input("x", block, value)
    assert message in str(err.value)


def test_text_is_cleaned_with_a_count():
    assert clean_input("x", gr.Textbox(), "a\ud800\x00") == ("a\ufffd\ufffd", 2)
    assert clean_input("x", gr.MultimodalTextbox(), {"text": "\udfff", "files": []}) == ({"text": "\ufffd", "files": []}, 1)
    assert clean_input("x", gr.Textbox(), "x" * 100 + "\x00")[1] == 1
