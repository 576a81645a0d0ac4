"""SQLite persistence of conversations and article drafts, and the drafts' own image folders."""

from studio.store.conversations import ConversationStore, ConversationSummary
from studio.store.draft_files import DraftFiles, check_draft_id, referenced_paths
from studio.store.drafts import DraftStore, DraftSummary

__all__ = [
    "ConversationStore",
    "ConversationSummary",
    "DraftFiles",
    "DraftStore",
    "DraftSummary",
    "check_draft_id",
    "referenced_paths",
]
