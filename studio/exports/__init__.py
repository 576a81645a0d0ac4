"""Pure export functions: session objects → bytes (and back, for the JSON format)."""

from studio.exports.conversation import (
    conversation_json,
    conversation_markdown,
    export_filename,
    parse_conversation_json,
)

__all__ = ["conversation_json", "conversation_markdown", "export_filename", "parse_conversation_json"]
