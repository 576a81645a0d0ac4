"""SQLite persistence of each user's saved system prompts (prompt presets), keyed by an opaque user id."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from studio.core.session import new_id
from studio.errors import InputError
from studio.store.keyed_rows import KeyedRowStore, keyed_table
from studio.store.sqlite_base import clean_title, column_text

# Bump when the schema changes and add a step to _MIGRATIONS; PRAGMA user_version records it.
SCHEMA_VERSION = 1

# The prompt text has a column of its own: the preset list shows it without decoding the JSON.
_MIGRATIONS = {1: (*keyed_table("presets"), "ALTER TABLE presets ADD COLUMN body TEXT NOT NULL DEFAULT ''")}

NAME_MAX_CHARS = 80
MAX_PRESETS = 200  # per user: a list longer than this is no longer something to pick from


@dataclass
class Preset:
    """One saved system prompt: a name (`title`) and the prompt text."""

    title: str
    text: str
    id: str = field(default_factory=new_id)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Preset":
        """Rebuild a preset written by `to_dict`."""
        return cls(title=data["title"], text=data["text"], id=data["id"], created=data.get("created", 0.0),
                   updated=data.get("updated", 0.0))


@dataclass(frozen=True)
class PresetSummary:
    """One row of the preset list, with its text."""

    id: str
    title: str
    updated: float
    text: str


class PresetStore(KeyedRowStore[Preset, PresetSummary]):
    """Prompt presets in one SQLite file; thread-safe because every operation opens its own connection."""

    SCHEMA_VERSION = SCHEMA_VERSION
    MIGRATIONS = _MIGRATIONS
    STORE, ITEM, SHORT, FRESH = "preset store", "prompt preset", "preset", "preset"
    TABLE, MODEL, SUMMARY = "presets", Preset, PresetSummary
    LISTED = ("id", "title", "updated", "body")

    def _columns(self, preset: Preset) -> dict[str, Any]:
        """The listing columns of one preset."""
        return {"title": column_text(preset.title), "created": preset.created, "updated": preset.updated,
                "body": column_text(preset.text)}

    def save_named(self, user_id: str, name: str, text: str) -> Preset:
        """Save `text` as the preset `name` of `user_id` (replacing the text of one so named); returns it."""
        title = clean_title(name or "")[:NAME_MAX_CHARS].rstrip()
        if not title:
            raise InputError("The preset needs a name.", "Type a short name for it, e.g. Concise.")
        if not (text or "").strip():
            raise InputError("The system prompt is empty: there is nothing to save.",
                             "Write the system prompt first, then save it as a preset.")
        existing = {p.title: p for p in self.list(user_id)}
        if title not in existing and len(existing) >= MAX_PRESETS:
            raise InputError(f"You already have {MAX_PRESETS} presets.", "Delete one you no longer use first.")
        preset = Preset(title=title, text=text, id=existing[title].id if title in existing else new_id())
        self.save(user_id, preset)
        return preset
