"""Prices stay text while `$…$` stays math (what the transcript hands Gradio's Markdown and KaTeX)."""

import pytest

from studio.ui.convert import shown_text
from studio.ui.math_text import DOLLAR, protect_prices

D = DOLLAR


@pytest.mark.parametrize("text, shown", [
    ("Costs $5 and $10.", f"Costs {D}5 and {D}10."),
    ("From $5-$10 a day", f"From {D}5-{D}10 a day"),
    ("Inline $x^2$ and $y$.", "Inline $x^2$ and $y$."),
    ("The range $a$ to $b$ costs $3", f"The range $a$ to $b$ costs {D}3"),
    ("Costs $5 and $10, while $x^2$ is math", f"Costs {D}5 and {D}10, while $x^2$ is math"),
    ("I paid $5 for $x$ and $2y + 1$", f"I paid {D}5 for $x$ and $2y + 1$"),
    ("a $$b + c$$ then $5", f"a $$b + c$$ then {D}5"),
    ("`echo $HOME $PATH` and $9", f"`echo $HOME $PATH` and {D}9"),
    ("```sh\necho $A $B\n```\n$7", f"```sh\necho $A $B\n```\n{D}7"),
    ("```sh\necho $A $B", "```sh\necho $A $B"),  # a code block still streaming
    ("one $a\n\nb$ two", f"one {D}a\n\nb{D} two"),  # math never spans paragraphs
    (r"\$5 stays escaped", r"\$5 stays escaped"),
    (r"\(x\) and \[y\]", r"\(x\) and \[y\]"),
])
def test_lone_dollars_become_text_and_math_is_left_alone(text, shown):
    assert protect_prices(text) == shown
    assert shown_text(protect_prices(text)) == text
