"""Pure export functions: session objects and article drafts → bytes (and back, for the JSON format).

`EXPORTS` names every download the studio offers: "<subject>_<kind>" → fn(subject, model) → ExportResult,
where the subject is an ArticleDraft ("article_…") or a ChatSession ("conversation_…")."""

from __future__ import annotations

from typing import Any, Callable, Optional

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
from studio.registry import Registry

Export = Callable[[Any, Optional[str]], ExportResult]
EXPORTS: Registry[Export] = Registry("export")


def export_kinds(subject: str) -> list[str]:
    """The kinds of export registered for `subject` ("article", "conversation"), e.g. ["html", "markdown"]."""
    prefix = f"{subject}_"
    return [name.removeprefix(prefix) for name in EXPORTS.names() if name.startswith(prefix)]


@EXPORTS.register("article_markdown")
def _article_markdown(draft, model: Optional[str] = None) -> ExportResult:
    """The article and its pictures as a zip (article.md + images/)."""
    return article_markdown_zip(draft)


@EXPORTS.register("article_html")
def _article_html(draft, model: Optional[str] = None) -> ExportResult:
    """The article as one self-contained HTML file."""
    return article_html(draft)


@EXPORTS.register("article_xlsx")
def _article_xlsx(draft, model: Optional[str] = None) -> ExportResult:
    """The article as an Excel workbook."""
    return article_xlsx(draft)


@EXPORTS.register("conversation_markdown")
def _conversation_markdown(session, model: Optional[str] = None) -> ExportResult:
    """The conversation as a Markdown document."""
    return ExportResult(conversation_markdown(session, model), export_filename(session.display_title(), "md"))


@EXPORTS.register("conversation_json")
def _conversation_json(session, model: Optional[str] = None) -> ExportResult:
    """The conversation as JSON that reads back to the same session."""
    return ExportResult(conversation_json(session, model), export_filename(session.display_title(), "json"))


__all__ = [
    "EXPORTS",
    "Export",
    "ExportResult",
    "article_html",
    "article_markdown_zip",
    "article_xlsx",
    "conversation_json",
    "conversation_markdown",
    "export_filename",
    "export_kinds",
    "export_path",
    "parse_conversation_json",
    "safe_stem",
]
