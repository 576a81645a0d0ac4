"""The article tab's events: write (streamed steps), edits, image edits, undo, exports and drafts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import gradio as gr

from studio.core.article import ArticleDraft, ArticleSession
from studio.core.types import Notice, TextDelta
from studio.errors import InputError
from studio.services import Services
from studio.tasks import article as article_task
from studio.tasks import article_edit as edit
from studio.ui.article_tab import UI_FRAME_S, ArticleTab, _paths, parse_params
from studio.ui.article_view import STATUS_MARKS, block_choices, preview_html, status_notice, steps_markdown
from studio.ui.convert import user_of
from studio.ui.errors import user_errors
from studio.ui.pacing import FramePacer
from studio.ui.stops import StopSignals, run_key

EXPORTS = {"markdown": "article_markdown_zip", "html": "article_html", "xlsx": "article_xlsx"}
CONFIRM_DELETE_JS = """(c, s, u) => [confirm((navigator.language || '').toLowerCase().startsWith('zh')
  ? '确定删除这篇文章草稿吗？删除后无法恢复。' : 'Delete this article draft? This cannot be undone.'), s, u]"""


def _draft_choices(services: Services, user: str) -> list[tuple[str, str]]:
    return [(f"{s.title or 'Untitled'} · {s.blocks}¶ {s.images}🖼{STATUS_MARKS.get(s.status, '')}", s.id)
            for s in services.drafts.list(user, 100)]


def _index(value) -> Optional[int]:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        raise InputError(f"Unknown paragraph {value!r}.", "Pick a paragraph from the list.") from None


def wire(services: Services, tab: ArticleTab, session: gr.State, user_id: gr.State, placeholder: str,
         pacer: FramePacer):
    """Attach the tab's events (API names start with article_); returns (fn, inputs, output) that
    refreshes the drafts list, for the shell to run when the user is known."""
    b = tab.buttons
    model_queue = dict(concurrency_id="engine:chat", concurrency_limit=services.engines.concurrency("chat"))
    stops = StopSignals()  # Stop sets the running write or edit's cancel event
    views = [tab.preview, tab.block, tab.para_text, tab.caption, tab.candidates, tab.drafts, session]

    def view(sess: ArticleSession, user: str, index: Optional[int] = None) -> list:
        blocks = sess.draft.blocks
        if index is None or not 0 <= index < len(blocks):
            index = 0 if blocks else None
        blk = blocks[index] if index is not None else None
        image = blk.image if blk else None
        gallery = [(c.path, c.label or c.source) for c in image.candidates] if image else []
        drafts = _draft_choices(services, user)
        return [preview_html(sess.draft, placeholder), gr.Dropdown(choices=block_choices(sess.draft), value=index),
                blk.text if blk else "", image.caption if image else "", gallery,
                gr.Radio(choices=drafts, value=sess.draft.id if any(d[1] == sess.draft.id for d in drafts) else None),
                sess]

    def stream(events, sess, user, index=None):
        steps, notice, shown = {}, "", 0.0
        yield [steps_markdown(steps), notice, *view(sess, user, index)]
        with pacer.streaming():
            for ev in events:
                if isinstance(ev, article_task.Step):
                    steps[ev.key] = ev
                elif isinstance(ev, Notice):
                    notice = f"{notice}  \n{ev.text}" if notice else ev.text
                    if ev.level == "warning":
                        gr.Warning(ev.text)
                elif isinstance(ev, TextDelta) and not pacer.due(shown, UI_FRAME_S):
                    continue
                shown = time.monotonic()
                yield [steps_markdown(steps), notice, *view(sess, user, index)]
        yield [steps_markdown(steps), notice, *view(sess, user, index)]

    @user_errors
    def on_write(instruction, material, uploads, beams, repetition_penalty, max_new_tokens, do_sample, seed,
                 image_count, model_selects, sess, uid, request: gr.Request):
        from studio.images import load_image

        user = user_of(uid, request)
        params = parse_params(beams, repetition_penalty, max_new_tokens, do_sample, seed, image_count, model_selects)
        article_task.check_instruction(instruction, material)
        paths = _paths(uploads)
        for path in paths:
            load_image(Path(path), name=Path(path).name)  # a broken upload is refused with its name
        sess.draft, sess.undo = ArticleDraft(engine="chat"), []
        # The task stores the draft first and only then copies the uploads into its folder.
        with stops.run(run_key(request)) as cancel:
            yield from stream(article_task.run(services, user, sess, instruction, material, params, paths, cancel),
                              sess, user)

    # Stop signals the run instead of cancelling the event (see studio/ui/stops.py).
    outs = [tab.steps, tab.notice, *views]
    stops.forget_on(b["write"].click, *(b[op].click for op in edit.MODEL_OPS))
    b["write"].click(on_write, [*tab.inputs, session, user_id], outs, api_name="article_write", **model_queue)
    for op in edit.MODEL_OPS:
        def on_model_edit(block, guide, sess, uid, request: gr.Request, op=op):
            user = user_of(uid, request)
            index = _index(block)
            target = index + 1 if op == "insert_after" else index
            with stops.run(run_key(request)) as cancel:
                yield from stream(edit.model_edit(services, user, sess, op, index, guide or "", cancel), sess, user,
                                  target)

        b[op].click(user_errors(on_model_edit), [tab.block, tab.guide, session, user_id], outs,
                    api_name=f"article_{op}", **model_queue)
    stops.stop_on(b["stop"].click)

    def simple(fn, name, extra=None, index_of=lambda i, s: i):
        """An edit with no model call: (paragraph[, value]) → notice + views."""
        def run(block, value, sess, uid, request):
            user = user_of(uid, request)
            index = _index(block)
            fn(user, sess, index, *([] if extra is None else [value]))
            return ["", *view(sess, user, index_of(index, sess))]

        if extra is None:
            def handler(block, sess, uid, request: gr.Request):
                return run(block, None, sess, uid, request)
            inputs = [tab.block, session, user_id]
        else:
            def handler(block, value, sess, uid, request: gr.Request):
                return run(block, value, sess, uid, request)
            inputs = [tab.block, extra, session, user_id]
        handler.__name__ = f"on_{name}"
        b[name].click(user_errors(handler), inputs, [tab.notice, *views], api_name=f"article_{name}")

    simple(lambda u, s, i, text: edit.set_text(services, u, s, i, text), "set_text", tab.para_text)
    simple(lambda u, s, i: edit.delete_block(services, u, s, i), "delete_block",
           index_of=lambda i, s: min(i, len(s.draft.blocks) - 1))
    simple(lambda u, s, i, cap: edit.search_image(services, u, s, i, cap), "search", tab.caption)
    simple(lambda u, s, i: edit.delete_image(services, u, s, i), "delete_image")
    simple(lambda u, s, i, k: edit.pick_candidate(services, u, s, i, int(k or 0)), "pick", tab.candidate)

    def on_gallery_select(evt: gr.SelectData):
        return evt.index

    tab.candidates.select(on_gallery_select, None, tab.candidate, api_visibility="private")

    @user_errors
    def on_undo(block, sess, uid, request: gr.Request):
        user = user_of(uid, request)
        edit.undo(services, user, sess)
        return ["", *view(sess, user, _index(block))]

    b["undo"].click(on_undo, [tab.block, session, user_id], [tab.notice, *views], api_name="article_undo")

    def on_block(block, sess, uid, request: gr.Request):
        return view(sess, user_of(uid, request), _index(block))[2:5]

    tab.block.input(on_block, [tab.block, session, user_id], [tab.para_text, tab.caption, tab.candidates],
                    api_visibility="private")
    _wire_exports(services, tab, session)
    return _wire_drafts(services, tab, session, user_id, views, view)


def _wire_exports(services: Services, tab: ArticleTab, session: gr.State) -> None:
    from studio import exports

    for kind, fn_name in EXPORTS.items():
        @user_errors
        def on_export(sess, kind=kind, fn_name=fn_name):
            if not sess.draft.blocks:
                gr.Info("The article is empty: write it first, then export.")  # harmless: a notice, no file
                return None, gr.skip()
            result = getattr(exports, fn_name)(sess.draft)
            for w in result.warnings:
                gr.Warning(w)
            path = services.files.export(result.filename, result.data)
            return str(path), "  \n".join(result.warnings)

        tab.buttons[f"export_{kind}"].click(on_export, [session], [tab.export_file, tab.notice],
                                            api_name=f"article_export_{kind}")


def _wire_drafts(services: Services, tab: ArticleTab, session, user_id, views, view) -> None:
    b = tab.buttons

    @user_errors
    def on_open(draft_id, sess, uid, request: gr.Request):
        user = user_of(uid, request)
        if draft_id:
            sess.draft, sess.undo = services.drafts.load(user, draft_id), []
        return ["", status_notice(sess.draft), *view(sess, user)]

    @user_errors
    def on_new(sess, uid, request: gr.Request):
        sess.draft, sess.undo = ArticleDraft(engine="chat"), []
        return ["", "", *view(sess, user_of(uid, request))]

    @user_errors
    def on_rename(title, sess, uid, request: gr.Request):
        user = user_of(uid, request)
        if not services.drafts.exists(user, sess.draft.id):
            raise InputError("This article is not saved yet.", "Write it first, then rename it.")
        sess.draft.title = services.drafts.rename(user, sess.draft.id, title or "")
        return ["", "", *view(sess, user)]

    @user_errors
    def on_delete(confirmed, sess, uid, request: gr.Request):
        user = user_of(uid, request)
        if not confirmed:
            return [gr.skip()] * (2 + len(views))
        if services.drafts.delete(user, sess.draft.id):  # a draft with no paragraphs yet has a row too
            services.draft_files.remove(user, sess.draft.id)
        sess.draft, sess.undo = ArticleDraft(engine="chat"), []
        return ["", "", *view(sess, user)]

    @user_errors
    def on_list(sess, uid, request: gr.Request):
        return view(sess, user_of(uid, request))[5]

    outs = [tab.rename_box, tab.notice, *views]
    tab.drafts.input(on_open, [tab.drafts, session, user_id], outs, api_name="article_open")
    b["new"].click(on_new, [session, user_id], outs, api_name="article_new")
    tab.rename_box.submit(on_rename, [tab.rename_box, session, user_id], outs, api_name="article_rename")
    confirm = gr.Checkbox(visible=False)
    b["delete_draft"].click(on_delete, [confirm, session, user_id], outs, api_name="article_delete",
                            js=CONFIRM_DELETE_JS)
    return on_list, [session, user_id], tab.drafts
