"""Tool schemas from typed, documented functions, and argument checks against them."""

from __future__ import annotations

from typing import Literal, Optional

import pytest

from studio.tools.base import ToolSpec
from studio.tools.schemas import SchemaError, check_arguments, function_spec, parse_docstring


def search_papers(query: str, max_results: int = 3, sort: Literal["relevance", "date"] = "relevance",
                  authors: Optional[list[str]] = None, strict: bool = False) -> str:
    """Search papers by keywords.

    Longer text that the model does not need.

    Args:
        query: The keywords, e.g. "diffusion models".
        max_results (int): How many papers to return,
            at most five.
        sort: How to order them.
        authors: Only papers by these authors.
        strict: Match every keyword.

    Returns:
        The papers as text.
    """
    return query


def make_image(prompt: str, width: float = 512.0, style: str | None = None) -> str:
    """Draw an image from a prompt.

    :param prompt: What to draw.
    :param float width: Width in pixels,
        a float.
    :param style: An optional style name.
    :returns: The image's URL.
    """
    return prompt


def test_google_docstring_gives_name_summary_types_and_required():
    spec = function_spec(search_papers)
    assert spec.name == "search_papers"
    assert spec.description == "Search papers by keywords."
    props = spec.parameters["properties"]
    assert props["query"] == {"type": "string", "description": 'The keywords, e.g. "diffusion models".'}
    assert props["max_results"] == {"type": "integer", "description": "How many papers to return, at most five.",
                                    "default": 3}
    assert props["sort"]["enum"] == ["relevance", "date"] and props["sort"]["type"] == "string"
    assert props["authors"]["type"] == ["array", "null"] and props["authors"]["items"] == {"type": "string"}
    assert props["strict"]["type"] == "boolean" and props["strict"]["default"] is False
    assert spec.parameters["required"] == ["query"]
    assert "Returns" not in props["strict"]["description"]


def test_rest_docstring_and_pep604_optional():
    spec = function_spec(make_image)
    props = spec.parameters["properties"]
    assert spec.description == "Draw an image from a prompt."
    assert props["prompt"]["description"] == "What to draw."
    assert props["width"] == {"type": "number", "description": "Width in pixels, a float.", "default": 512.0}
    assert props["style"]["type"] == ["string", "null"]
    assert spec.parameters["required"] == ["prompt"]
    assert spec.openai()["function"]["parameters"] is spec.parameters


def test_parse_docstring_summary_spans_lines_until_blank():
    summary, args = parse_docstring("Add two\nnumbers.\n\nArgs:\n    a: first\n    b: second\n")
    assert summary == "Add two numbers."
    assert args == {"a": "first", "b": "second"}


def undocumented(x: int) -> int:
    return x


def unannotated(x):
    """Has no annotation."""
    return x


def variadic(*args: int) -> int:
    """Takes anything."""
    return 0


def odd_type(x: set[int]) -> int:
    """A set is no JSON type."""
    return 0


def summaryless(x: int) -> int:
    """
    Args:
        x: a number.
    """
    return x


@pytest.mark.parametrize("fn, words", [(undocumented, "no docstring"),
                                       (summaryless, "a docstring without a summary line first"), (unannotated, "no type annotation"),
                                       (variadic, "*args"), (odd_type, "cannot be given to a model")])
def test_functions_that_cannot_be_tools_are_refused_with_the_reason(fn, words):
    with pytest.raises(SchemaError) as info:
        function_spec(fn)
    assert words in info.value.message and fn.__name__ in info.value.message
    assert info.value.hint


SPEC = function_spec(search_papers)


def test_check_arguments_accepts_a_good_call():
    assert check_arguments(SPEC, {"query": "llm", "max_results": 2, "authors": None, "sort": "date"}) == []
    assert check_arguments(SPEC, {"query": "llm", "authors": ["Hinton"]}) == []


def test_check_arguments_reports_missing_unknown_and_wrong_types():
    problems = check_arguments(SPEC, {"max_results": "3", "topic": "x", "strict": 1, "sort": "best",
                                      "authors": ["a", 2]})
    text = "\n".join(problems)
    assert "missing required argument 'query'" in text
    assert "unknown argument 'topic'" in text and "query, max_results" in text
    assert "'max_results' must be integer, not string '3'" in text
    assert "'strict' must be boolean, not integer 1" in text
    assert "'sort' must be one of ['relevance', 'date']" in text
    assert "'authors[1]' must be string" in text
    assert len(problems) == 6


def test_check_arguments_bool_is_not_a_number_and_int_is_a_number():
    spec = ToolSpec("f", "f", {"type": "object", "properties": {"n": {"type": "number"}, "k": {"type": "integer",
                                                                                             "maximum": 5}},
                               "required": []})
    assert check_arguments(spec, {"n": 2, "k": 5}) == []
    assert check_arguments(spec, {"n": True}) == ["argument 'n' must be number, not boolean True"]
    assert check_arguments(spec, {"k": 6}) == ["argument 'k' must be at most 5, not 6"]


def test_check_arguments_on_text_or_a_list_asks_for_a_json_object_with_an_example():
    [problem] = check_arguments(SPEC, "llm papers")
    assert "must be a JSON object such as {\"query\": \"...\"}" in problem and "'llm papers'" in problem
    assert check_arguments(SPEC, ["llm"])[0].startswith("the arguments of search_papers must be a JSON object")
