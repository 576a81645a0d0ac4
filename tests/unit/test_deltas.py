"""Joining the deltas waiting in a request's queue (studio/engines/deltas.py)."""

from __future__ import annotations

import queue

from studio.core.types import TextDelta
from studio.engines.deltas import take_waiting


def _queue(*deltas):
    q = queue.Queue()
    for d in deltas:
        q.put(d)
    return q


def test_waiting_text_joins_into_the_final_delta_with_its_counts():
    q = _queue(TextDelta("b"), TextDelta("c"), TextDelta("d", finish_reason="length", completion_tokens=4, prompt_tokens=3))
    got = take_waiting(TextDelta("a"), q)
    assert got == [TextDelta("abcd", finish_reason="length", completion_tokens=4, prompt_tokens=3)]
    assert q.empty()


def test_nothing_waiting_gives_the_delta_itself_and_a_final_delta_is_never_joined_past():
    first = TextDelta("a")
    assert take_waiting(first, queue.Queue()) == [first]
    q = _queue(TextDelta("x"))
    done = TextDelta("", finish_reason="stop")
    assert take_waiting(done, q) == [done] and q.qsize() == 1
    q = _queue(TextDelta("b"), TextDelta("", finish_reason="stop"), TextDelta("next request's"))
    assert take_waiting(TextDelta("a"), q) == [TextDelta("ab", finish_reason="stop")] and q.qsize() == 1


def test_a_tool_call_stays_a_delta_of_its_own_in_its_place():
    call = TextDelta(tool_call={"kind": "plugin", "name": "search", "arguments": {}, "id": "1"})
    q = _queue(TextDelta("b"), call, TextDelta("after"))
    assert take_waiting(TextDelta("a"), q) == [TextDelta("ab"), call]
    assert take_waiting(q.get(), q) == [TextDelta("after")]
    assert take_waiting(call, _queue(TextDelta("z"))) == [call]
