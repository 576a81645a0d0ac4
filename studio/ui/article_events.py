"""The article tab's events: write (streamed steps), edits, image edits, undo, exports and drafts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import gradio as gr

from studio.core.article import ArticleSession
from studio.core.types import Notice, TextDelta
from studio.errors import InputError
from studio.exports import EXPORTS
from studio.services import Services
from studio.tasks import article as article_task
from studio.tasks import article_edit as edit
from studio.tasks import article_plan
from studio.tasks.article_plan import SpeedLog
from studio.ui import homework_export, sidebar_list
from studio.ui.article_tab import UI_FRAME_S, ArticleTab, _paths, parse_params
from studio.ui.article_view import (block_choices, draft_label, estimate_markdown, notice_words, preview_html,
                                    status_notice, steps_markdown)
from studio.ui.i18n import page_lang, tr
from studio.ui.convert import user_of
from studio.ui.errors import user_errors
from studio.ui.pacing import FramePacer
from studio.ui.stops import StopSignals, run_key

CONFIRM_DELETE_JS = sidebar_list.confirm_js("Delete this article draft? This cannot be undone.",
                                            "确定删除这篇文章草稿吗？删除后无法恢复。")


def _index(value) -> Optional[int]:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        raise InputError(f"Unknown paragraph {value!r}.", "Pick a paragraph from the list.") from None


class _Views:
    """What the tab shows for a session: the whole draft, one paragraph, the drafts list."""

    def __init__(self, services: Services, tab: ArticleTab) -> None:
        self.services, self.tab = services, tab

    def drafts(self, sess: ArticleSession, user: str, lang: str = "en") -> dict:
        """The sidebar's drafts list (the hidden radio of the API, the rendered list's state), the open
        draft selected if it is stored."""
        rows = self.services.drafts.list(user, sidebar_list.LIST_LIMIT)
        choices = [(draft_label(s.title, s.blocks, s.images, s.status, lang), s.id) for s in rows]
        value = sess.draft.id if any(c[1] == sess.draft.id for c in choices) else None
        entries = [sidebar_list.Entry(s.id, s.title, s.updated, f"{s.blocks} {s.images} {s.status}".strip())
                   for s in rows]
        return {self.tab.drafts.drafts: gr.Radio(choices=choices, value=value),
                self.tab.drafts.listing: sidebar_list.listing(entries, value or "")}

    def paragraph(self, sess: ArticleSession, index: Optional[int]) -> dict:
        """The text, caption and candidate images of paragraph `index` (none: empty fields)."""
        tab, blocks = self.tab, sess.draft.blocks
        blk = blocks[index] if index is not None else None
        image = blk.image if blk else None
        gallery = [(c.path, c.label or c.source) for c in image.candidates] if image else []
        chosen = image.chosen if image and 0 <= image.chosen < len(gallery) else None
        return {tab.para_text: blk.text if blk else "", tab.caption: image.caption if image else "",
                tab.candidates: gr.Gallery(gallery, selected_index=chosen)}

    def draft(self, sess: ArticleSession, user: str, index: Optional[int] = None, lang: Optional[str] = None) -> dict:
        """Every view of the draft, paragraph `index` picked (the first when it does not exist)."""
        if index is None or not 0 <= index < len(sess.draft.blocks):
            # The first picture's paragraph, so its candidates are one click away (else the first paragraph).
            index = next((i for i, b in enumerate(sess.draft.blocks) if b.image), 0) if sess.draft.blocks else None
        tab = self.tab
        return {tab.preview: preview_html(sess.draft, lang),
                tab.block: gr.Dropdown(choices=block_choices(sess.draft), value=index),
                **self.paragraph(sess, index), **self.drafts(sess, user, lang or "en"), tab.session: sess}

    def edited(self, sess: ArticleSession, user: str, index: Optional[int] = None, lang: Optional[str] = None) -> dict:
        """After an edit with no model call: the notice cleared and the draft shown."""
        return {self.tab.notice: "", **self.draft(sess, user, index, lang)}


class _Writing:
    """Write and the model edits: streamed steps under one Stop per browser session."""

    def __init__(self, services: Services, views: _Views, pacer: FramePacer) -> None:
        self.services, self.views, self.tab, self.pacer = services, views, views.tab, pacer
        self.stops = StopSignals()  # Stop sets the running write or edit's cancel event
        self.speeds = SpeedLog()  # each engine's measured speed, for the time estimate

    def _frame(self, steps: dict, notice: str, sess, user, index, lang: str) -> dict:
        return {self.tab.steps: steps_markdown(steps, lang), self.tab.notice: notice,
                **self.views.draft(sess, user, index, lang)}

    def _stream(self, events, sess, user, lang: str, index=None):
        steps, notice, shown = {}, "", 0.0
        yield self._frame(steps, notice, sess, user, index, lang)
        with self.pacer.streaming():
            for ev in events:
                if isinstance(ev, article_task.Step):
                    steps[ev.key] = ev
                elif isinstance(ev, Notice):
                    text = notice_words(ev, lang)
                    notice = f"{notice}  \n{text}" if notice else text
                    if ev.level == "warning":
                        gr.Warning(text)
                elif isinstance(ev, TextDelta) and not self.pacer.due(shown, UI_FRAME_S):
                    continue
                shown = time.monotonic()
                yield self._frame(steps, notice, sess, user, index, lang)
        yield self._frame(steps, notice, sess, user, index, lang)

    @user_errors
    def on_write(self, instruction, material, uploads, beams, repetition_penalty, max_new_tokens, do_sample, seed,
                 image_count, model_selects, sess, uid, request: gr.Request):
        from studio.images import load_image

        user = user_of(uid, request)
        params = parse_params(beams, repetition_penalty, max_new_tokens, do_sample, seed, image_count, model_selects)
        article_task.check_instruction(instruction, material)
        paths = _paths(uploads)
        for path in paths:
            load_image(Path(path), name=Path(path).name)  # a broken upload is refused with its name
        sess.draft, sess.undo = self.tab.new_draft(), []
        # The task stores the draft first and only then copies the uploads into its folder.
        with self.stops.run(run_key(request)) as cancel:
            events = article_task.run(self.services, user, sess, instruction, material, params, paths, cancel,
                                      self.speeds)
            yield from self._stream(events, sess, user, page_lang(request))

    def on_plan(self, instruction, beams, repetition_penalty, max_new_tokens, do_sample, seed, image_count,
                model_selects, request: gr.Request):
        """Before Write: how long it will take, whether the model writes the title's language, vision picking."""
        name, tab = self.tab.engine, self.tab
        sees = article_plan.sees_images(self.services, name)
        selects = gr.Checkbox(value=bool(model_selects) and sees is not False, interactive=sees is not False)
        try:
            params = parse_params(beams, repetition_penalty, max_new_tokens, do_sample, seed, image_count,
                                  bool(model_selects) and sees is not False)
        except InputError:
            return {tab.estimate: "", tab.settings.model_selects: selects}
        est = article_plan.estimate(self.services, name, params, self.speeds)
        lang = article_plan.unwritable_language(self.services, name, instruction if isinstance(instruction, str) else "")
        writes = (self.services.engines.config_of(name).languages or [""])[0]
        text = estimate_markdown(est, self.services.engines.label(name), page_lang(request), lang, writes)
        return {tab.estimate: text, tab.settings.model_selects: selects}

    def on_model_edit(self, op: str):
        """The handler of model edit `op` (rewrite, expand, …) of the picked paragraph."""
        @user_errors
        def handler(block, guide, sess, uid, request: gr.Request):
            user, index = user_of(uid, request), _index(block)
            target = index + 1 if op == "insert_after" else index
            with self.stops.run(run_key(request)) as cancel:
                events = edit.model_edit(self.services, user, sess, op, index, guide or "", cancel, self.speeds)
                yield from self._stream(events, sess, user, page_lang(request), target)

        handler.__name__ = f"on_{op}"
        return handler


class _Editing:
    """The edits that need no model call, undo, paragraph picking and exports."""

    def __init__(self, services: Services, views: _Views) -> None:
        self.services, self.views = services, views

    def _edit(self, change, block, sess, uid, request, *args, shown=None) -> dict:
        """Apply `change(services, user, session, index, *args)`; show paragraph `shown(index, session)`."""
        user, index = user_of(uid, request), _index(block)
        change(self.services, user, sess, index, *args)
        return self.views.edited(sess, user, index if shown is None else shown(index, sess), page_lang(request))

    @user_errors
    def on_set_text(self, block, value, sess, uid, request: gr.Request):
        return self._edit(edit.set_text, block, sess, uid, request, value)

    @user_errors
    def on_delete_block(self, block, sess, uid, request: gr.Request):
        return self._edit(edit.delete_block, block, sess, uid, request,
                          shown=lambda index, s: min(index, len(s.draft.blocks) - 1))

    @user_errors
    def on_search(self, block, value, sess, uid, request: gr.Request):
        return self._edit(edit.search_image, block, sess, uid, request, value)

    @user_errors
    def on_delete_image(self, block, sess, uid, request: gr.Request):
        return self._edit(edit.delete_image, block, sess, uid, request)

    @user_errors
    def on_pick(self, block, value, sess, uid, request: gr.Request):
        return self._edit(edit.pick_candidate, block, sess, uid, request, int(value or 0))

    @user_errors
    def on_undo(self, block, sess, uid, request: gr.Request):
        user = user_of(uid, request)
        edit.undo(self.services, user, sess)
        return self.views.edited(sess, user, _index(block), page_lang(request))

    def on_block(self, block, sess, uid, request: gr.Request):
        return self.views.paragraph(sess, _index(block))

    @user_errors
    def on_candidate(self, block, sess, uid, evt: gr.SelectData, request: gr.Request):
        """A click on a candidate puts it in the article at once (one click, no Use button)."""
        index, blocks = _index(block), sess.draft.blocks
        image = blocks[index].image if index is not None and 0 <= index < len(blocks) else None
        if image is not None and evt.index == image.chosen:
            return gr.skip()  # the picture shown already
        return self._edit(edit.pick_candidate, block, sess, uid, request, int(evt.index))

    def on_export(self, kind: str):
        """The handler that downloads the draft as article export `kind` (a notice when it is empty)."""
        tab = self.views.tab

        @user_errors
        def export(sess, request: gr.Request):
            if not sess.draft.blocks:
                gr.Info(tr(page_lang(request), "article_export_empty"))  # harmless: a notice, no file
                return {tab.export_file: None}
            result = EXPORTS.get(f"article_{kind}")(sess.draft, None)
            for w in result.warnings:
                gr.Warning(w)
            path = self.services.files.export(result.filename, result.data)
            return {tab.export_file: str(path), tab.notice: "  \n".join(result.warnings)}

        export.__name__ = f"on_export_{kind}"
        return export


class _Drafts:
    """The sidebar's drafts section: open, new, rename, delete, list."""

    def __init__(self, services: Services, views: _Views) -> None:
        self.services, self.views, self.tab = services, views, views.tab

    def _opened(self, sess, user: str, notice: str = "", lang: Optional[str] = None) -> dict:
        return {self.tab.drafts.rename_box: "", self.tab.notice: notice, **self.views.draft(sess, user, lang=lang)}

    @user_errors
    def on_open(self, draft_id, sess, uid, request: gr.Request):
        user = user_of(uid, request)
        if draft_id:
            sess.draft, sess.undo = self.services.drafts.load(user, draft_id), []
        lang = page_lang(request)
        return self._opened(sess, user, status_notice(sess.draft, lang), lang)

    @user_errors
    def on_new(self, sess, uid, request: gr.Request):
        sess.draft, sess.undo = self.tab.new_draft(), []
        return self._opened(sess, user_of(uid, request))

    @user_errors
    def on_rename(self, title, sess, uid, request: gr.Request):
        user = user_of(uid, request)
        if not self.services.drafts.exists(user, sess.draft.id):
            raise InputError("This article is not saved yet.", "Write it first, then rename it.",
                             key="err_draft_not_saved")
        return self.rename_item(sess.draft.id)(title, sess, uid, request)

    @user_errors
    def on_delete(self, confirmed, sess, uid, request: gr.Request):
        return self.delete_item(sess.draft.id)(confirmed, sess, uid, request)

    def open_item(self, draft_id: str):
        """The handler that opens draft `draft_id` from the list."""
        def open_(sess, uid, request: gr.Request):
            return self.on_open(draft_id, sess, uid, request)

        return open_

    def rename_item(self, draft_id: str):
        """The handler that renames draft `draft_id` (the open one or another in the list)."""
        @user_errors
        def rename(title, sess, uid, request: gr.Request):
            user = user_of(uid, request)
            stored = self.services.drafts.rename(user, draft_id, title or "")
            if sess.draft.id != draft_id:
                return self.views.drafts(sess, user, page_lang(request))
            sess.draft.title = stored
            return self._opened(sess, user)

        return rename

    def delete_item(self, draft_id: str):
        """The handler that deletes draft `draft_id` and its pictures once confirmed."""
        @user_errors
        def delete(confirmed, sess, uid, request: gr.Request):
            if not confirmed:
                return gr.skip()
            user = user_of(uid, request)
            if self.services.drafts.delete(user, draft_id):  # a draft with no paragraphs yet has a row too
                self.services.draft_files.remove(user, draft_id)
            if sess.draft.id != draft_id:
                return self.views.drafts(sess, user, page_lang(request))
            sess.draft, sess.undo = self.tab.new_draft(), []
            return self._opened(sess, user)

        return delete

    @user_errors
    def on_list(self, sess, uid, request: gr.Request):
        return self.views.drafts(sess, user_of(uid, request), page_lang(request))


def _wire_writing(services: Services, tab: ArticleTab, user_id: gr.State, views: _Views, pacer: FramePacer) -> None:
    h, b = _Writing(services, views, pacer), tab.buttons
    model_queue = dict(concurrency_id=f"engine:{tab.engine}", concurrency_limit=services.engines.concurrency(tab.engine))
    outs = [tab.steps, tab.notice, *tab.view_outputs()]
    plan_in, plan_out = [tab.settings.instruction, *tab.settings.inputs()[3:]], [tab.estimate, tab.settings.model_selects]
    plan = dict(fn=h.on_plan, inputs=plan_in, outputs=plan_out, api_visibility="private", queue=False)
    # Stop signals the run instead of cancelling the event (see studio/ui/stops.py).
    h.stops.forget_on(b.write.click, *(button.click for button in b.model_edits.values()))
    runs = [b.write.click(h.on_write, [*tab.settings.inputs(), tab.session, user_id], outs, api_name="article_write",
                          **model_queue)]
    for op, button in b.model_edits.items():
        runs.append(button.click(h.on_model_edit(op), [tab.block, tab.guide, tab.session, user_id], outs,
                                 api_name=f"article_{op}", **model_queue))
    for run in runs:  # the model's speed was just measured: estimate with it
        run.then(**plan)
    h.stops.stop_on(b.stop.click)
    for control in plan_in:  # .input: the user's own changes only, never the plan's update of model_selects
        control.input(trigger_mode="always_last", **plan)
    user_id.change(**plan)  # on each page load (the shell sets user_id once it knows the user)


def _wire_editing(services: Services, tab: ArticleTab, user_id: gr.State, views: _Views) -> None:
    h, b = _Editing(services, views), tab.buttons
    outs, at, s = [tab.notice, *tab.view_outputs()], tab.block, tab.session
    b.set_text.click(h.on_set_text, [at, tab.para_text, s, user_id], outs, api_name="article_set_text")
    b.delete_block.click(h.on_delete_block, [at, s, user_id], outs, api_name="article_delete_block")
    b.search.click(h.on_search, [at, tab.caption, s, user_id], outs, api_name="article_search")
    b.delete_image.click(h.on_delete_image, [at, s, user_id], outs, api_name="article_delete_image")
    b.pick.click(h.on_pick, [at, tab.candidate, s, user_id], outs, api_name="article_pick")
    b.undo.click(h.on_undo, [at, s, user_id], outs, api_name="article_undo")
    tab.candidates.select(h.on_candidate, [at, s, user_id], outs, api_visibility="private")
    tab.block.input(h.on_block, [at, s, user_id], tab.paragraph_outputs(), api_visibility="private")
    for kind, button in b.exports.items():
        button.click(h.on_export(kind), [s], [tab.export_file, tab.notice], api_name=f"article_export_{kind}")
    if tab.homework is not None:
        homework_export.wire_article(services, tab.homework, s, tab.export_file, tab.notice)


def _wire_drafts(services: Services, tab: ArticleTab, user_id: gr.State, views: _Views):
    h, d, s = _Drafts(services, views), tab.drafts, tab.session
    outs = [d.rename_box, tab.notice, *tab.view_outputs()]
    d.drafts.input(h.on_open, [d.drafts, s, user_id], outs, api_name="article_open")
    d.new.click(h.on_new, [s, user_id], outs, api_name="article_new")
    d.rename_box.submit(h.on_rename, [d.rename_box, s, user_id], outs, api_name="article_rename")
    confirm = gr.Checkbox(visible=False)
    d.delete.click(h.on_delete, [confirm, s, user_id], outs, api_name="article_delete", js=CONFIRM_DELETE_JS)

    def wire_item(parts: sidebar_list.ItemParts) -> None:
        """Open on a click of the title, rename on Enter in the box, delete once confirmed."""
        did, private = parts.entry.id, dict(api_visibility="private")
        parts.title.click(h.open_item(did), [s, user_id], outs, **private)
        parts.rename.submit(h.rename_item(did), [parts.rename, s, user_id], outs, **private)
        parts.delete.click(h.delete_item(did), [confirm, s, user_id], outs, js=CONFIRM_DELETE_JS, **private)

    d.wire_item = wire_item
    return h.on_list, [s, user_id], [d.drafts, d.listing]


def wire(services: Services, tab: ArticleTab, user_id: gr.State, pacer: FramePacer):
    """Attach the tab's events (API names start with article_); returns (fn, inputs, output) that
    refreshes the drafts list, for the shell to run when the user is known."""
    views = _Views(services, tab)
    _wire_writing(services, tab, user_id, views, pacer)
    _wire_editing(services, tab, user_id, views)
    return _wire_drafts(services, tab, user_id, views)
