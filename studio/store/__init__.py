"""SQLite persistence of conversations (and, later, article drafts)."""

from studio.store.conversations import ConversationStore, ConversationSummary

__all__ = ["ConversationStore", "ConversationSummary"]
