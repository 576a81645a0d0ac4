"""The article tab (图文创作): compose, watch the steps, edit paragraphs and images, export, drafts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
from pydantic import ValidationError

from studio.core.article import ArticleDraft, ArticleParams
from studio.errors import InputError
from studio.ui.article_view import preview_html

UI_FRAME_S = 0.1
IMAGE_COUNTS = ["auto"] + [str(n) for n in range(0, 16)]


@dataclass
class ArticleTab:
    """The tab's components."""

    inputs: list  # instruction, material, uploads, beams, repetition, max_new, sample, seed, images, model_selects
    steps: gr.Markdown
    notice: gr.Markdown
    preview: gr.HTML
    block: gr.Dropdown
    guide: gr.Textbox
    para_text: gr.Textbox
    caption: gr.Textbox
    candidates: gr.Gallery
    candidate: gr.Number
    export_file: gr.File
    drafts: gr.Radio
    rename_box: gr.Textbox
    buttons: dict


def build(t, drafts: dict) -> ArticleTab:
    """Lay out the tab inside the current Blocks context (`drafts` from build_drafts, in the sidebar)."""
    b = {}
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            instruction = gr.Textbox(label=t("article_title"), lines=2, max_lines=6, elem_id="article-title",
                                     placeholder=t("article_title_hint"))
            with gr.Accordion(t("article_material"), open=False):
                material = gr.Textbox(show_label=False, lines=4, max_lines=12, elem_id="article-material")
                uploads = gr.File(label=t("article_uploads"), file_count="multiple", elem_id="article-uploads")
            with gr.Accordion(t("article_settings"), open=False):
                with gr.Row():
                    beams = gr.Slider(1, 6, value=1, step=1, label=t("beams"))
                    rep = gr.Slider(1.0, 10.0, value=1.05, step=0.01, label=t("repetition_penalty"))
                with gr.Row():
                    max_new = gr.Slider(50, 4096, value=700, step=10, label=t("max_new_tokens"))
                    seed = gr.Number(-1, precision=0, minimum=-1, label=t("seed"))
                with gr.Row():
                    sample = gr.Checkbox(False, label=t("do_sample"))
                    selects = gr.Checkbox(True, label=t("model_selects"))
                images = gr.Dropdown(IMAGE_COUNTS, value="auto", label=t("image_count"), elem_id="article-images")
            with gr.Row():
                b["write"] = gr.Button(t("write"), variant="primary", elem_id="article-write")
                b["stop"] = gr.Button(t("stop"), variant="stop", elem_id="article-stop")
            steps = gr.Markdown("", elem_id="article-steps")
        with gr.Column(scale=3):
            notice = gr.Markdown("", elem_id="article-notice")
            preview = gr.HTML(preview_html(ArticleDraft(), ""), elem_id="article-preview", padding=True)
            with gr.Accordion(t("article_edit"), open=True):
                block = gr.Dropdown([], label=t("paragraph"), elem_id="article-block", interactive=True)
                guide = gr.Textbox(label=t("edit_guide"), lines=1, elem_id="article-guide")
                with gr.Row():
                    for op in ("rewrite", "expand", "shorten", "insert_before", "insert_after"):
                        b[op] = gr.Button(t(op), size="sm", elem_id=f"article-{op.replace('_', '-')}")
                para_text = gr.Textbox(label=t("paragraph_text"), lines=3, max_lines=12, elem_id="article-para")
                with gr.Row():
                    b["set_text"] = gr.Button(t("save_text"), size="sm", elem_id="article-save-text")
                    b["delete_block"] = gr.Button(t("delete_paragraph"), size="sm", elem_id="article-delete-block")
                    b["undo"] = gr.Button(t("undo_edit"), size="sm", elem_id="article-undo")
                caption = gr.Textbox(label=t("image_caption"), lines=1, elem_id="article-caption")
                with gr.Row():
                    b["search"] = gr.Button(t("search_image"), size="sm", elem_id="article-search")
                    b["delete_image"] = gr.Button(t("delete_image"), size="sm", elem_id="article-delete-image")
                candidates = gr.Gallery(label=t("candidates"), columns=4, height=160, allow_preview=False,
                                        elem_id="article-candidates")
                candidate = gr.Number(0, precision=0, minimum=0, label=t("candidate_no"), elem_id="article-candidate")
                b["pick"] = gr.Button(t("use_candidate"), size="sm", elem_id="article-pick")
            with gr.Row():
                for kind in ("markdown", "html", "xlsx"):
                    b[f"export_{kind}"] = gr.Button(t(f"export_{kind}"), size="sm", elem_id=f"article-export-{kind}")
            export_file = gr.File(show_label=False, interactive=False, elem_id="article-export-file")
    b.update(drafts["buttons"])
    return ArticleTab([instruction, material, uploads, beams, rep, max_new, sample, seed, images, selects], steps,
                      notice, preview, block, guide, para_text, caption, candidates, candidate, export_file,
                      drafts["list"], drafts["rename"], b)


def build_drafts(t) -> dict:
    """The article drafts section (placed in the sidebar): list, new, delete, rename."""
    with gr.Accordion(t("drafts"), open=True, elem_id="article-drafts-section"):
        drafts = gr.Radio([], show_label=False, elem_id="article-drafts", elem_classes=["conv-list"])
        with gr.Row():
            new = gr.Button(t("new_article"), size="sm", elem_id="article-new")
            delete = gr.Button(t("delete"), size="sm", elem_id="article-delete-draft")
        rename = gr.Textbox(placeholder=t("rename_placeholder"), show_label=False, max_length=200,
                            submit_btn=t("rename"), elem_id="article-rename")
    return {"list": drafts, "rename": rename, "buttons": {"new": new, "delete_draft": delete}}


def parse_params(beams, rep, max_new, sample, seed, images, selects) -> ArticleParams:
    """The settings as ArticleParams, or InputError naming the bad one."""
    try:
        count = None if images in (None, "", "auto") else int(images)
        return ArticleParams(beams=int(beams), repetition_penalty=float(rep), max_new_tokens=int(max_new),
                             do_sample=bool(sample), seed=None if seed is None or int(seed) < 0 else int(seed),
                             image_count=count, model_selects=bool(selects))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"Invalid setting {first['loc'][0]}: {first['msg']}.", "Adjust it in Settings.") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"Invalid setting: {exc}.", "Adjust it in Settings.") from None


def _paths(files: Any) -> list[str]:
    out = []
    for f in files or []:
        path = f if isinstance(f, str) else (f.get("path") if isinstance(f, dict) else getattr(f, "name", None))
        if path:
            out.append(str(path))
    return out
