"""Joining the deltas that waited in a request's queue while its reader was busy.

A reply's reader (the chat task and the page's frames, a /v1 stream) runs once per delta it takes.
With many users streaming on one interpreter a reader falls behind the decoder; taking everything
waiting at once lets it catch up in one step instead of once per token. A reader that keeps pace
gets one delta at a time, as before.
"""

from __future__ import annotations

import dataclasses
import queue

from studio.core.types import TextDelta


def take_waiting(first: TextDelta, waiting: "queue.Queue[TextDelta]") -> list[TextDelta]:
    """`first` and the deltas queued behind it, plain text joined into one delta (a final delta takes
    the text before it); a delta carrying a tool call stays a delta of its own, in its place."""
    out = [first]
    while not (out[-1].finish_reason or out[-1].tool_call is not None):
        try:
            nxt = waiting.get_nowait()
        except queue.Empty:
            break
        if nxt.tool_call is not None:
            out.append(nxt)  # ends the take: what follows it comes with the next one
        else:
            out[-1] = dataclasses.replace(nxt, text=out[-1].text + nxt.text)
    return out
