"""Versions of a conversation: every earlier continuation kept when a message is edited or a reply regenerated.

The active path is the session's own `messages` list, so callers that read or append to it need not know
about versions. A `Fork` at message index `at` holds the other continuations from that index on
(`Tail`s); each tail carries the forks inside it, keyed by absolute message index (all greater than
`at`, since the messages before `at` are shared). Switching the version at `at` swaps the whole tail:
its messages and its own nested versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from studio.core.types import Message


@dataclass
class Tail:
    """One continuation of a conversation from a fork's index on, with the versions inside it."""

    messages: list[Message] = field(default_factory=list)
    forks: dict[int, "Fork"] = field(default_factory=dict)

    def is_empty(self) -> bool:
        """True when there is nothing in it to keep."""
        return not self.messages and not self.forks


@dataclass
class Fork:
    """The versions of a conversation from message `at` on; `tails[active]` is None: it is the active path."""

    tails: list[Optional[Tail]]
    active: int

    @property
    def count(self) -> int:
        """How many versions there are."""
        return len(self.tails)


def take_tail(messages: list[Message], forks: dict[int, Fork], at: int) -> Tail:
    """Cut the active path at `at`: its messages from there and the forks inside them, as a Tail."""
    tail = Tail(messages[at:], {k: f for k, f in forks.items() if k > at})
    del messages[at:]
    for k in tail.forks:
        del forks[k]
    return tail


def put_tail(messages: list[Message], forks: dict[int, Fork], tail: Tail) -> None:
    """Make `tail` the continuation of the active path (which ends where the tail starts)."""
    messages.extend(tail.messages)
    forks.update(tail.forks)


def branch(messages: list[Message], forks: dict[int, Fork], at: int) -> None:
    """Keep the path from `at` on as a version and leave the path cut there, ready for a new version."""
    tail = take_tail(messages, forks, at)
    fork = forks.get(at)
    if fork is None:
        if not tail.is_empty():
            forks[at] = Fork([tail, None], 1)
        return
    if tail.is_empty():
        fork.tails.pop(fork.active)  # an empty version (stopped before its first word) holds nothing
    else:
        fork.tails[fork.active] = tail
    fork.tails.append(None)
    fork.active = len(fork.tails) - 1


def switch(messages: list[Message], forks: dict[int, Fork], at: int, version: int) -> None:
    """Show version `version` (0-based) of the conversation from `at` on; the current one is kept."""
    fork = forks[at]
    if version == fork.active:
        return
    target = fork.tails[version]
    tail = take_tail(messages, forks, at)
    if tail.is_empty():
        fork.tails.pop(fork.active)
        version -= version > fork.active
    else:
        fork.tails[fork.active] = tail
    fork.tails[version] = None
    fork.active = version
    put_tail(messages, forks, target)
    if fork.count == 1:
        del forks[at]  # the only version left: nothing to switch to


def drop_after(forks: dict[int, Fork], end: int) -> None:
    """Forget the forks that start past `end` (their messages were removed from the path)."""
    for k in [k for k in forks if k > end]:
        del forks[k]


def forks_dict(forks: dict[int, Fork], message_dict: Callable[[Message], dict]) -> list[dict]:
    """The forks as JSON-ready dicts (the active version's slot is null)."""
    return [{"at": at, "active": f.active,
             "tails": [None if t is None else {"messages": [message_dict(m) for m in t.messages],
                                               "forks": forks_dict(t.forks, message_dict)} for t in f.tails]}
            for at, f in sorted(forks.items())]


def stored_forks(data: list[dict], stored_message: Callable[[dict], Message]) -> dict[int, Fork]:
    """Forks written by `forks_dict`."""
    out = {}
    for f in data:
        tails = [None if t is None else Tail([stored_message(m) for m in t.get("messages", [])],
                                             stored_forks(t.get("forks", []), stored_message))
                 for t in f["tails"]]
        out[int(f["at"])] = Fork(tails, int(f["active"]))
    return out
