"""Editing an article draft: the model's paragraph edits (rewrite, expand, shorten, insert), hand
edits, deletions, and image edits (search again, pick another, delete, insert). Every edit can be
undone; the draft is saved after each (and before a model edit starts)."""

from __future__ import annotations

import threading
from typing import Iterator, Optional

from studio.core.article import ArticleBlock, ArticleSession
from studio.core.text import cleaned
from studio.core.types import Notice, TextDelta
from studio.errors import InputError
from studio.services import Services
from studio.tasks import article_prompts as P
from studio.tasks.article_model import ArticleModel, Cancelled, ready, writing_params
from studio.tasks.article_plan import SpeedLog

MODEL_OPS = ("rewrite", "expand", "shorten", "insert_before", "insert_after")
EDIT_TOKENS = 400
EDIT_STOPPED = "Stopped; the paragraph is unchanged."


def _block(session: ArticleSession, index: int) -> ArticleBlock:
    blocks = session.draft.blocks
    if not blocks:
        raise InputError("The draft has no paragraphs yet.", "Write an article first.", key="err_no_paragraphs")
    if not isinstance(index, int) or not 0 <= index < len(blocks):
        raise InputError(f"There is no paragraph {index + 1 if isinstance(index, int) else index!r} "
                         f"(the draft has {len(blocks)}).", "Pick a paragraph from the list.")
    return blocks[index]


def _save(services: Services, user_id: str, session: ArticleSession) -> None:
    session.draft.touch()
    services.drafts.save(user_id, session.draft)


def model_edit(services: Services, user_id: str, session: ArticleSession, op: str, index: int, instruction: str = "",
               cancel: Optional[threading.Event] = None, speeds: Optional[SpeedLog] = None) -> Iterator:
    """Let the model rewrite / expand / shorten paragraph `index`, or write one before/after it."""
    if op not in MODEL_OPS:
        raise InputError(f"Unknown edit {op!r}.", f"Use one of: {', '.join(MODEL_OPS)}.")
    block = _block(session, index)
    cancel = cancel or threading.Event()
    engine = yield from ready(services, session.draft.engine, cancel)
    if engine is None:
        yield Notice(EDIT_STOPPED, key="article_n_edit_stopped")
        return
    model = ArticleModel(services, session.draft.engine, engine, speeds)
    prompts = P.prompts_for(engine.info().family)
    blocks = session.draft.blocks
    guide = (instruction or "").strip() or session.draft.instruction
    if op.startswith("insert"):
        before = op == "insert_before"
        prev = blocks[index - 1].text if before and index > 0 else (block.text if not before else "")
        nxt = block.text if before else (blocks[index + 1].text if index + 1 < len(blocks) else "")
        prompt = prompts.edit("insert", nxt, guide, prev)
    else:
        prompt = prompts.edit(op, block.text, guide)
    # Stored as it stands before the model runs: a crash mid-edit leaves this version, reopenable.
    _save(services, user_id, session)
    session.snapshot()
    try:
        text = yield from model.ask(prompt, writing_params(session.draft.params, EDIT_TOKENS), cancel)
    except Cancelled:
        session.restore()
        yield Notice(EDIT_STOPPED, key="article_n_edit_stopped")  # the user asked: no toast
        return
    new = "\n".join(P.split_paragraphs(text, limit=6)).strip()
    if not new:
        session.restore()
        raise InputError("The model returned nothing; the paragraph is unchanged.", "Try again, or edit it by hand.",
                         key="err_edit_nothing")
    if op == "insert_before":
        blocks.insert(index, ArticleBlock(new))
    elif op == "insert_after":
        blocks.insert(index + 1, ArticleBlock(new))
    else:
        block.text = new
    _save(services, user_id, session)
    yield TextDelta(finish_reason="stop")


def set_text(services: Services, user_id: str, session: ArticleSession, index: int, text: str) -> None:
    """Replace paragraph `index` with the user's own text (empty text is refused: use delete)."""
    block = _block(session, index)
    text = cleaned((text if isinstance(text, str) else "").replace("\x00", "")).strip()
    if not text:
        raise InputError("The paragraph text is empty.", "To remove the paragraph, use Delete.",
                         key="err_paragraph_empty")
    session.snapshot()
    block.text = text
    _save(services, user_id, session)


def delete_block(services: Services, user_id: str, session: ArticleSession, index: int) -> None:
    """Remove paragraph `index` (and its image)."""
    _block(session, index)
    session.snapshot()
    del session.draft.blocks[index]
    _save(services, user_id, session)


def search_image(services: Services, user_id: str, session: ArticleSession, index: int, caption: str) -> int:
    """Find pictures for `caption` and place the best after paragraph `index` (new or replacing); returns how many."""
    from studio.tasks.article_images import find_candidates, place

    block = _block(session, index)
    caption = cleaned(caption if isinstance(caption, str) else "").strip()
    if not caption:
        raise InputError("The caption is empty.", "Describe the picture you want, then search.",
                         key="err_caption_empty")
    used = {b.image.path for b in session.draft.blocks if b.image is not None and b is not block}
    used |= {c.path for b in session.draft.blocks if b.image and b is not block for c in b.image.candidates[:1]}
    found, warnings = find_candidates(services, session, caption, used)
    if not found:
        raise InputError(f"No picture found for “{caption}”." + (f" ({'; '.join(warnings)})" if warnings else ""),
                         "Try other words, or add pictures to the gallery folder.")
    session.snapshot()
    place(services, user_id, session, index, caption, found, 0)
    _save(services, user_id, session)
    return len(found)


def pick_candidate(services: Services, user_id: str, session: ArticleSession, index: int, choice: int) -> None:
    """Show candidate `choice` of the image after paragraph `index` instead."""
    from studio.tasks.article_images import place

    block = _block(session, index)
    if block.image is None:
        raise InputError(f"Paragraph {index + 1} has no image.", "Search for one first.")
    cands = block.image.candidates
    if not isinstance(choice, int) or not 0 <= choice < len(cands):
        raise InputError(f"There is no candidate {choice!r} (there are {len(cands)}).", "Pick one of the candidates shown.")
    if choice == block.image.chosen:
        return  # shown already: nothing to undo
    session.snapshot()
    place(services, user_id, session, index, block.image.caption, cands, choice)
    _save(services, user_id, session)


def delete_image(services: Services, user_id: str, session: ArticleSession, index: int) -> None:
    """Remove the image after paragraph `index`."""
    block = _block(session, index)
    if block.image is None:
        raise InputError(f"Paragraph {index + 1} has no image.", "")
    session.snapshot()
    block.image = None
    _save(services, user_id, session)


def undo(services: Services, user_id: str, session: ArticleSession) -> None:
    """Go back to before the last edit."""
    if not session.restore():
        raise InputError("There is nothing to undo.", "", key="err_nothing_to_undo")
    _save(services, user_id, session)
