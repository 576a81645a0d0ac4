"""Pure export functions: session objects and article drafts → bytes (and back, for the JSON format)."""

from studio.exports.article_html import article_html
from studio.exports.article_images import ExportResult
from studio.exports.article_markdown import article_markdown_zip
from studio.exports.article_xlsx import article_xlsx
from studio.exports.conversation import (
    conversation_json,
    conversation_markdown,
    parse_conversation_json,
)
from studio.exports.filenames import export_filename, export_path, safe_stem

__all__ = [
    "ExportResult",
    "article_html",
    "article_markdown_zip",
    "article_xlsx",
    "conversation_json",
    "conversation_markdown",
    "export_filename",
    "export_path",
    "parse_conversation_json",
    "safe_stem",
]
