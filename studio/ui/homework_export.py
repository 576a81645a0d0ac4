"""The homework bundle's buttons (chat and article tabs): one click, a zip with an HTML page and a JSON record."""

from __future__ import annotations

import gradio as gr

from studio.exports.homework import LABEL_KEYS
from studio.services import Services
from studio.tasks import homework as homework_task
from studio.ui.errors import user_errors
from studio.ui.i18n import page_lang, tr


def labels(lang: str) -> dict[str, str]:
    """The words of the bundle's HTML page in `lang`."""
    return {key: tr(lang, f"hw_{key}") for key in LABEL_KEYS}


def button(t, elem_id: str) -> gr.Button:
    """The export button, placed beside the tab's other exports."""
    return gr.Button(t("homework_export"), size="sm", elem_id=elem_id)


def wire_chat(services: Services, btn: gr.Button, session: gr.State, file_out: gr.File) -> None:
    """Export the chat tab's conversation (API: export_homework)."""
    @user_errors
    def on_export_homework(sess, request: gr.Request):
        lang = page_lang(request)
        if not sess.messages:
            gr.Info(tr(lang, "homework_empty_chat"))  # harmless: a notice, no file
            return None
        result = homework_task.conversation_homework(services, sess, labels(lang), lang)
        return str(services.files.export(result.filename, result.data))

    btn.click(on_export_homework, [session], file_out, api_name="export_homework")


def wire_article(services: Services, btn: gr.Button, session: gr.State, file_out: gr.File,
                 notice: gr.Markdown) -> None:
    """Export the article tab's draft (API: article_export_homework); unusable pictures are named in the notice."""
    @user_errors
    def on_article_export_homework(sess, request: gr.Request):
        lang = page_lang(request)
        if not sess.draft.blocks:
            gr.Info(tr(lang, "homework_empty_article"))
            return {file_out: None}
        result = homework_task.article_homework(services, sess.draft, labels(lang), lang)
        path = services.files.export(result.filename, result.data)
        return {file_out: str(path), notice: "  \n".join(result.warnings)}

    btn.click(on_article_export_homework, [session], [file_out, notice], api_name="article_export_homework")
