"""Per-user session objects: plain, deep-copyable dataclasses holding names, never engines."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Optional

from studio.core import versions
from studio.core.types import GenParams, Message, TextPart
from studio.core.versions import Fork

TITLE_CHARS = 48
# Of to_dict: 2 tells an explicitly empty system prompt ("none") from the default (None); 3 adds "versions".
FORMAT = 3


def new_id() -> str:
    """A random opaque identifier."""
    return uuid.uuid4().hex


@dataclass
class ChatSession:
    """One conversation: system prompt, turns, parameters and the engine it talks to."""

    id: str = field(default_factory=new_id)
    title: str = ""
    # None: the model's own default (its meta instruction or chat template's); "": none at all; else this text.
    system_prompt: Optional[str] = None
    messages: list[Message] = field(default_factory=list)
    params: GenParams = field(default_factory=GenParams)
    engine: str = "chat"
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    # The other versions of the conversation, by the message index they start at (see studio.core.versions).
    forks: dict[int, Fork] = field(default_factory=dict)

    def prompt_messages(self) -> list[Message]:
        """The messages to send: the system prompt as set (an empty one says "none") and the turns;
        with no system prompt set, the engine applies the model's default."""
        if self.system_prompt is None:
            return list(self.messages)
        text = self.system_prompt if self.system_prompt.strip() else ""
        return [Message.of("system", text), *self.messages]

    def display_title(self) -> str:
        """The title, or one derived from the first user message."""
        if self.title:
            return self.title
        for m in self.messages:
            if m.role == "user" and m.text.strip():
                text = " ".join(m.text.split())
                return text[:TITLE_CHARS] + ("…" if len(text) > TITLE_CHARS else "")
        return ""

    def last_user_index(self) -> Optional[int]:
        """Index of the last user message, or None."""
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i].role == "user":
                return i
        return None

    def checkpoint(self) -> "ChatSession":
        """A copy to save mid-reply: the streaming reply marked partial, an empty one left out."""
        messages = list(self.messages)
        if messages and messages[-1].role == "assistant":
            last = messages.pop()
            if last.text:
                messages.append(replace(last, content=list(last.content), partial=True))  # meta (stats) kept
        return replace(self, messages=messages)

    def branch(self, at: int) -> None:
        """Keep the conversation from message `at` on as a version, and cut it there for a new one."""
        versions.branch(self.messages, self.forks, at)

    def switch_version(self, at: int, version: int) -> None:
        """Show version `version` (1-based) of the conversation from message `at` on; nothing is lost."""
        versions.switch(self.messages, self.forks, at, version - 1)

    def version_of(self, at: int) -> Optional[tuple[int, int]]:
        """(shown version, 1-based; how many) of the conversation from message `at` on; None without versions."""
        fork = self.forks.get(at)
        return None if fork is None else (fork.active + 1, fork.count)

    def forget_versions_after(self, end: int) -> None:
        """Drop the versions that start past message `end` (those messages were removed)."""
        versions.drop_after(self.forks, end)

    def touch(self) -> None:
        """Mark the session as changed now."""
        self.updated = time.time()

    def to_dict(self) -> dict:
        """A JSON-ready dict (text parts only; images are not persisted yet)."""
        return {
            "id": self.id,
            "title": self.title,
            "system_prompt": self.system_prompt,
            "format": FORMAT,
            "messages": [_message_dict(m) for m in self.messages],
            "params": self.params.model_dump(mode="json"),
            "engine": self.engine,
            "created": self.created,
            "updated": self.updated,
            **({"versions": versions.forks_dict(self.forks, _message_dict)} if self.forks else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ChatSession":
        """Rebuild a session written by `to_dict`."""
        return cls(
            id=data["id"],
            title=data.get("title", ""),
            system_prompt=_stored_system_prompt(data),
            # Rows written before replies were checkpointed have no "partial" key: complete replies.
            messages=[_stored_message(m) for m in data.get("messages", [])],
            params=GenParams(**data.get("params", {})),
            engine=data.get("engine", "chat"),
            created=data.get("created", time.time()),
            updated=data.get("updated", time.time()),
            forks=versions.stored_forks(data.get("versions", []), _stored_message),
        )


def _stored_system_prompt(data: dict) -> Optional[str]:
    """The stored system prompt; before format 2 an empty one meant the model's default, as None does now."""
    value = data.get("system_prompt")
    if data.get("format", 1) < 2 and not (value or "").strip():
        return None
    return value


def _message_dict(m: Message) -> dict:
    """One stored message; the partial flag and agent fields are written only when set, so rows stay as before."""
    data = {"role": m.role, "content": m.text}
    if m.partial:
        data["partial"] = True
    for key in ("name", "tool_call", "meta"):
        if getattr(m, key):
            data[key] = getattr(m, key)
    return data


def _stored_message(data: dict) -> Message:
    """A message written by `_message_dict` (rows from before checkpoints have no "partial": complete)."""
    return Message(data["role"], [TextPart(data["content"])], bool(data.get("partial", False)),
                   name=data.get("name"), tool_call=data.get("tool_call"), meta=data.get("meta"))
