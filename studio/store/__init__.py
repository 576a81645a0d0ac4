"""SQLite persistence of conversations, article drafts and prompt presets, and the drafts' own image folders."""

from studio.store.conversations import ConversationStore, ConversationSummary
from studio.store.draft_files import DraftFiles, check_draft_id, referenced_paths
from studio.store.drafts import DraftStore, DraftSummary
from studio.store.presets import Preset, PresetStore, PresetSummary

__all__ = [
    "ConversationStore",
    "ConversationSummary",
    "DraftFiles",
    "DraftStore",
    "DraftSummary",
    "Preset",
    "PresetStore",
    "PresetSummary",
    "check_draft_id",
    "referenced_paths",
]
