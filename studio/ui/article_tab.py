"""The article tab (图文创作): compose, watch the steps, edit paragraphs and images, export, drafts."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Optional

import gradio as gr
from pydantic import ValidationError

from studio.core.article import ArticleDraft, ArticleParams, ArticleSession
from studio.errors import InputError
from studio.exports import export_kinds
from studio.tasks import article_edit as edit
from studio.ui import homework_export, sidebar_list
from studio.ui.i18n import page_lang, tr
from studio.ui.icons import icon

# The preview is re-sent whole with every update; twice a second is smooth enough for reading and leaves
# the CPU to a model that runs on it (ten updates a second made the embedded model write 4x slower).
UI_FRAME_S = 0.5
DRAFT_STATUSES = ("draft_status_writing", "draft_status_stopped", "draft_status_failed")
IMAGE_COUNTS = [str(n) for n in range(0, 16)]


@dataclass
class ArticleSettings:
    """What Write reads; field order is on_write's (and the public API's) argument order."""

    instruction: gr.Textbox
    material: gr.Textbox
    uploads: gr.File
    beams: gr.Slider
    repetition_penalty: gr.Slider
    max_new_tokens: gr.Slider
    do_sample: gr.Checkbox
    seed: gr.Number
    image_count: gr.Dropdown
    model_selects: gr.Checkbox

    def inputs(self) -> list:
        """The controls in argument order."""
        return [getattr(self, f.name) for f in fields(self)]


@dataclass
class DraftsSection:
    """The article drafts section in the sidebar. The hidden radio, rename box and delete button carry the
    public API (/article_open, /article_rename, /article_delete); people use the rendered list."""

    drafts: gr.Radio
    rename_box: gr.Textbox
    new: gr.Button
    delete: gr.Button
    listing: Optional[gr.State] = None  # what the rendered list shows (sidebar_list.listing)
    wire_item: Optional[Callable] = None  # set by article_events.wire: each rendered item's events


@dataclass
class ArticleButtons:
    """The tab's buttons; `model_edits` by edit.MODEL_OPS name, `exports` by article export kind."""

    write: gr.Button
    stop: gr.Button
    model_edits: dict[str, gr.Button]
    set_text: gr.Button
    delete_block: gr.Button
    undo: gr.Button
    search: gr.Button
    delete_image: gr.Button
    pick: gr.Button
    exports: dict[str, gr.Button]


@dataclass
class ArticleTab:
    """The tab's components, its per-browser session and the engine new drafts are written with."""

    engine: str
    session: gr.State
    settings: ArticleSettings
    estimate: gr.Markdown
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
    drafts: DraftsSection
    buttons: ArticleButtons
    homework: Optional[gr.Button] = None  # the homework bundle's export (studio/ui/homework_export.py)

    def paragraph_outputs(self) -> list:
        """What picking another paragraph updates."""
        return [self.para_text, self.caption, self.candidates]

    def view_outputs(self) -> list:
        """What showing the draft updates: preview, paragraph picker and fields, drafts list, session."""
        return [self.preview, self.block, *self.paragraph_outputs(), self.drafts.drafts, self.session,
                self.drafts.listing]

    def new_draft(self) -> ArticleDraft:
        """An empty draft on the tab's engine."""
        return ArticleDraft(engine=self.engine)


def _settings(t, defaults: ArticleParams, sees: Optional[bool]) -> ArticleSettings:
    """The compose controls, at the engine's article defaults (studio.tasks.article_plan decides them)."""
    instruction = gr.Textbox(label=t("article_title"), lines=2, max_lines=6, elem_id="article-title",
                             placeholder=t("article_title_hint"))
    with gr.Accordion(t("article_material"), open=False):
        material = gr.Textbox(show_label=False, lines=4, max_lines=12, elem_id="article-material")
        uploads = gr.File(label=t("article_uploads"), file_count="multiple", elem_id="article-uploads")
    with gr.Accordion(t("article_settings"), open=False, elem_id="article-settings"):
        count = "auto" if defaults.image_count is None else str(defaults.image_count)
        images = gr.Dropdown([(t("article_auto"), "auto"), *[(n, n) for n in IMAGE_COUNTS]], value=count,
                             label=t("article_images_count"), elem_id="article-images")
        max_new = gr.Slider(50, 4096, value=defaults.max_new_tokens, step=10, label=t("article_max_new"),
                            elem_id="article-max-new")
        # One slider a row: side by side, their labels wrapped a word (or a character) per line.
        beams = gr.Slider(1, 6, value=defaults.beams, step=1, label=t("article_beams"))
        rep = gr.Slider(1.0, 10.0, value=defaults.repetition_penalty, step=0.01, label=t("article_repetition"))
        with gr.Row(equal_height=True):
            seed = gr.Number(-1 if defaults.seed is None else defaults.seed, precision=0, minimum=-1,
                             label=t("article_seed"), min_width=140)
            sample = gr.Checkbox(defaults.do_sample, label=t("article_sample"), min_width=140)
        # Off and fixed for a model that cannot see the candidates (the reason is shown under it).
        selects = gr.Checkbox(defaults.model_selects and sees is not False, label=t("article_model_selects"),
                              interactive=sees is not False, elem_id="article-model-selects",
                              info=t("article_selects_off") if sees is False else None)
    return ArticleSettings(instruction, material, uploads, beams, rep, max_new, sample, seed, images, selects)


def _button(t, key: str, elem: str) -> gr.Button:
    return gr.Button(t(key), size="sm", elem_id=f"article-{elem}")


def _editor(t) -> tuple[dict, dict]:
    """The paragraph and image editor: its fields and its buttons, by ArticleTab / ArticleButtons field."""
    block = gr.Dropdown([], label=t("paragraph"), elem_id="article-block", interactive=True)
    guide = gr.Textbox(label=t("edit_guide"), lines=1, elem_id="article-guide")
    with gr.Row():
        model_edits = {op: _button(t, op, op.replace("_", "-")) for op in edit.MODEL_OPS}
    para_text = gr.Textbox(label=t("paragraph_text"), lines=3, max_lines=12, elem_id="article-para")
    with gr.Row():
        set_text, delete_block = _button(t, "save_text", "save-text"), _button(t, "delete_paragraph", "delete-block")
        undo = _button(t, "article_undo", "undo")
    caption = gr.Textbox(label=t("image_caption"), lines=1, elem_id="article-caption")
    with gr.Row():
        search, delete_image = _button(t, "article_search", "search"), _button(t, "delete_image", "delete-image")
    # One click on a candidate swaps the picture; the hidden number and button keep the public /article_pick.
    candidates = gr.Gallery(label=t("article_candidates"), columns=4, height=200, allow_preview=False,
                            object_fit="cover", elem_id="article-candidates")
    candidate = gr.Number(0, precision=0, minimum=0, visible=False, elem_id="article-candidate")
    pick = gr.Button(visible=False, elem_id="article-pick")
    return (dict(block=block, guide=guide, para_text=para_text, caption=caption, candidates=candidates,
                 candidate=candidate),
            dict(model_edits=model_edits, set_text=set_text, delete_block=delete_block, undo=undo, search=search,
                 delete_image=delete_image, pick=pick))


def build(t, drafts: DraftsSection, engine: str, defaults: ArticleParams = ArticleParams(),
          sees: Optional[bool] = None) -> ArticleTab:
    """Lay out the tab inside the current Blocks context (`drafts` from build_drafts, in the sidebar;
    `defaults` and `sees` from studio.tasks.article_plan for `engine`)."""
    session = gr.State(ArticleSession())
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            settings = _settings(t, defaults, sees)
            with gr.Row():
                write = gr.Button(t("article_write"), variant="primary", elem_id="article-write", icon=icon("write"))
                stop = gr.Button(t("article_stop"), variant="stop", elem_id="article-stop", icon=icon("stop"))
            estimate = gr.Markdown("", elem_id="article-estimate")
            steps = gr.Markdown("", elem_id="article-steps")
        with gr.Column(scale=3):
            notice = gr.Markdown("", elem_id="article-notice")
            preview = gr.HTML(t("article_empty_html"), elem_id="article-preview", padding=True)
            with gr.Accordion(t("article_edit"), open=True):
                editor, edits = _editor(t)
            with gr.Row():
                exports = {kind: _button(t, f"export_{kind}", f"export-{kind}") for kind in export_kinds("article")}
                homework = homework_export.button(t, "article-export-homework")
            export_file = gr.File(show_label=False, interactive=False, elem_id="article-export-file")
    return ArticleTab(engine=engine, session=session, settings=settings, estimate=estimate, steps=steps,
                      notice=notice, preview=preview, export_file=export_file, drafts=drafts, homework=homework,
                      **editor,
                      buttons=ArticleButtons(write=write, stop=stop, exports=exports, **edits))


def build_drafts(t, tz=None) -> DraftsSection:
    """The article drafts section (placed in the sidebar): new, and the list with per-item open, rename and
    delete, grouped by date in the browser's zone (`tz`, a component holding minutes east of UTC)."""
    with gr.Accordion(t("drafts"), open=True, elem_id="article-drafts-section"):
        new = gr.Button(t("new_article"), size="sm", elem_id="article-new", icon=icon("plus"))
        listing = gr.State(sidebar_list.pending())
        section = DraftsSection(gr.Radio([], visible=False), gr.Textbox(visible=False, max_length=200), new,
                                gr.Button(visible=False), listing)
        with gr.Column(elem_id="article-drafts", elem_classes=["side-list"]):
            @gr.render(inputs=[listing] + ([tz] if tz is not None else []), triggers=[listing.change])
            def _draw(state, zone=None, request: gr.Request = None):
                lang = page_lang(request)
                sidebar_list.draw(t, "draft", state, zone, "no_drafts", section.wire_item,
                                  note=lambda entry: draft_note(entry.note, lang))
    return section


def draft_note(counts: str, lang: str) -> str:
    """The line under a draft's title from its listing note ("paragraphs images [status]")."""
    blocks, images, *status = (counts.split() + ["0", "0"])[:3]
    text = f"{tr(lang, 'draft_blocks', count=blocks, n=blocks)} · {tr(lang, 'draft_images', count=images, n=images)}"
    mark = f"draft_status_{status[0]}" if status else ""
    return f"{text} · {tr(lang, mark)}" if mark in DRAFT_STATUSES else text


def parse_params(beams, rep, max_new, sample, seed, images, selects) -> ArticleParams:
    """The settings as ArticleParams, or InputError naming the bad one."""
    try:
        count = None if images in (None, "", "auto") else int(images)
        return ArticleParams(beams=int(beams), repetition_penalty=float(rep), max_new_tokens=int(max_new),
                             do_sample=bool(sample), seed=None if seed is None or int(seed) < 0 else int(seed),
                             image_count=count, model_selects=bool(selects))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"Invalid setting {first['loc'][0]}: {first['msg']}.", "Adjust it in Settings.",
                         key="err_article_setting", values={"name": first["loc"][0]}) from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"Invalid setting: {exc}.", "Adjust it in Settings.") from None


def _paths(files: Any) -> list[str]:
    out = []
    for f in files or []:
        path = f if isinstance(f, str) else (f.get("path") if isinstance(f, dict) else getattr(f, "name", None))
        if path:
            out.append(str(path))
    return out
