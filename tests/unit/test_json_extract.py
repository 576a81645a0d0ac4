"""Parsing and validating JSON answers, and the messages a user or the model gets back."""

from __future__ import annotations

import json

import pytest

from studio.errors import InputError
from studio.tasks.json_extract import DEFAULT_SCHEMA, load_schema, parse_answer, retry_prompt, schema_errors


def test_default_schema_is_valid():
    assert load_schema(json.dumps(DEFAULT_SCHEMA)) == DEFAULT_SCHEMA


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("{oops", "not valid JSON: Expecting property name"), ("[1, 2]", "must be a JSON object"),
    ('{"type": "nonsense"}', "not a valid JSON Schema"), ('{"properties": {"a": {"type": 5}}}', "properties/a/type"),
])
def test_bad_schemas_are_refused_with_the_reason(text, message):
    with pytest.raises(InputError, match=message):
        load_schema(text)


@pytest.mark.parametrize("answer, value", [
    ('{"a": 1}', {"a": 1}),
    ('Sure! Here it is:\n```json\n{"a": [1, 2]}\n```\nAnything else?', {"a": [1, 2]}),
    ('The result is {"a": "x"} as requested.', {"a": "x"}),
    ("[1, 2, 3]", [1, 2, 3]),
])
def test_answers_are_found_inside_chatter_and_fences(answer, value):
    assert parse_answer(answer) == value


@pytest.mark.parametrize("answer, reason", [("", "empty"), ("no json here", "not valid JSON"), ('{"a": }', "not valid JSON")])
def test_unparseable_answers_say_why(answer, reason):
    with pytest.raises(ValueError, match=reason):
        parse_answer(answer)


def test_schema_errors_name_the_place_and_the_retry_prompt_carries_them():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}},
              "required": ["n"]}
    assert schema_errors({"n": 3, "tags": ["x"]}, schema) == []
    errors = schema_errors({"tags": ["x", 4]}, schema)
    assert "(top level): 'n' is a required property" in errors and "tags/1: 4 is not of type 'string'" in errors
    assert "tags/1: 4 is not of type 'string'" in retry_prompt("; ".join(errors))
