"""The illustrated-article pipeline (图文创作), UI-free: write → paragraphs → image positions →
captions → candidates → choice → interleaved article. Yields progress events; cancellable between
and inside steps; the draft is stored from the start and as it goes, so a crash loses little."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Optional, Union

from studio.core.article import ArticleBlock, ArticleDraft, ArticleParams, ArticleSession
from studio.core.text import cleaned
from studio.core.types import Notice, TextDelta
from studio.errors import InputError, StudioError
from studio.services import Services
from studio.tasks import article_images, article_plan
from studio.tasks import article_prompts as P
from studio.tasks.article_model import ArticleModel, Cancelled, Step, ready, writing_params
from studio.tasks.article_plan import SpeedLog
from studio.tasks.turn import Reply

MAX_INSTRUCTION = 2000
MAX_MATERIAL = 20_000
STEPS = ("write", "split", "positions", "captions", "images", "select")


ArticleEvent = Union[Step, TextDelta, Notice]


def check_instruction(instruction: str, material: str) -> tuple[str, str]:
    """The cleaned title/instruction and material, or InputError saying what is wrong."""
    text = cleaned((instruction if isinstance(instruction, str) else "").replace("\x00", "")).strip()
    if not text:
        raise InputError("The title is empty.", "Type a title or an instruction for the article, then Write.",
                         key="err_title_empty")
    if len(text) > MAX_INSTRUCTION:
        raise InputError(f"The title/instruction is {len(text):,} characters; the limit is {MAX_INSTRUCTION:,}.",
                         "Put long source text into 'Material' instead.", key="err_title_long",
                         values={"n": len(text), "limit": MAX_INSTRUCTION})
    material = cleaned((material if isinstance(material, str) else "").replace("\x00", "")).strip()
    if len(material) > MAX_MATERIAL:
        raise InputError(f"The material is {len(material):,} characters; the limit is {MAX_MATERIAL:,}.",
                         "Shorten it to the parts the article needs.", key="err_material_long",
                         values={"n": len(material), "limit": MAX_MATERIAL})
    return text, material


def _timed(key: str):
    """A small helper to time a step."""
    return key, time.monotonic()


class Saver:
    """Stores one draft as it is written: at each step, and the streamed text as the turn checkpoints it."""

    def __init__(self, services: Services, user_id: str, draft: ArticleDraft) -> None:
        self.services, self.user_id, self.draft = services, user_id, draft

    def save(self, blocks: Optional[list[ArticleBlock]] = None) -> None:
        """Store the draft now (with `blocks` instead of its own, for text still streaming)."""
        self.draft.touch()
        stored = self.draft if blocks is None else replace(self.draft, blocks=blocks)
        self.services.drafts.save(self.user_id, stored)

    def checkpoint(self, reply: Reply) -> None:
        """Store the text streamed so far, as paragraphs (the turn loop says when)."""
        self.save([ArticleBlock(p) for p in P.split_paragraphs(reply.text)])


def run(services: Services, user_id: str, session: ArticleSession, instruction: str, material: str,
        params: ArticleParams, uploads: list[str], cancel: Optional[threading.Event] = None,
        speeds: Optional[SpeedLog] = None) -> Iterator[ArticleEvent]:
    """Write a new illustrated article into `session.draft` (a fresh draft), streaming progress.

    The draft is stored before the model is asked (uploads are copied into its folder only once its
    row exists), after every step, while the text streams, and marked done / stopped / failed at the end.
    A failure shows as the step's "failed" with the reason, then is raised."""
    instruction, material = check_instruction(instruction, material)
    cancel = cancel or threading.Event()
    draft = session.draft
    draft.instruction, draft.material, draft.params = instruction, material, params
    draft.title = draft.title or instruction[:80]
    draft.blocks, draft.uploads, draft.status, draft.step = [], [], "writing", "start"
    saver = Saver(services, user_id, draft)
    saver.save()
    status = "failed"
    try:
        yield from _language_notice(services, draft.engine, instruction)
        draft.uploads = [str(services.draft_files.adopt(user_id, draft.id, Path(p), Path(p).stem)) for p in uploads]
        if draft.uploads:
            saver.save()
        engine = yield from ready(services, draft.engine, cancel)
        if engine is None:
            raise Cancelled()
        model = ArticleModel(services, draft.engine, engine, speeds)
        for event in _pipeline(services, user_id, session, model, cancel, saver):
            if isinstance(event, Step):
                draft.step = event.key
                saver.save()
            yield event
        status = "done"
    except Cancelled:
        status = "stopped"
        yield Step(_current(draft), "cancelled", detail="article_d_stopped")
        # The user asked: no toast.
        yield Notice("Stopped. What was written so far is kept in the draft.", key="article_n_stopped")
    except StudioError as exc:
        yield Step(_current(draft), "failed", detail="article_d_failed", args={"reason": str(exc), "error": exc})
        raise
    except GeneratorExit:  # the UI's Stop (or a closed page) closes the generator
        status = "stopped"
        raise
    finally:
        cancel.set()
        draft.status = status
        saver.save()


def _current(draft: ArticleDraft) -> str:
    """The step that was running (the first one before any had started)."""
    return draft.step if draft.step in STEPS else "write"


def _language_notice(services: Services, engine: str, title: str) -> Iterator[Notice]:
    """A warning, before the model is asked, when its config says it cannot write the title's language."""
    lang = article_plan.unwritable_language(services, engine, title)
    if lang:
        model, writes = services.engines.label(engine), services.engines.config_of(engine).languages[0]
        yield Notice(f"{model} cannot write {lang}: the article will be in {writes}.", "warning",
                     key="article_n_language", args={"language": lang, "model": model, "writes": writes})


def _pipeline(services: Services, user_id: str, session: ArticleSession, model: ArticleModel,
              cancel: threading.Event, saver: Saver) -> Iterator[ArticleEvent]:
    """The steps after the model is ready: write, split, then the pictures."""
    draft = session.draft
    info = model.engine.info()
    draft.model, prompts = info.model, P.prompts_for(info.family)
    key, t0 = _timed("write")
    yield Step(key, "running")
    prompt = prompts.write(draft.instruction, draft.material, draft.params.max_new_tokens)
    text, tokens = yield from _write(model, prompt, draft, cancel, saver)
    paragraphs = P.split_paragraphs(text)
    if not paragraphs:
        raise InputError("The model wrote nothing.", "Try again, or change the title or the settings.",
                         key="err_wrote_nothing")
    yield Step(key, "done", time.monotonic() - t0, "article_d_written", {"chars": len(text), "tokens": tokens})
    key, t0 = _timed("split")
    draft.blocks = [ArticleBlock(p) for p in paragraphs]
    yield Step(key, "done", time.monotonic() - t0, "article_d_paragraphs", {"n": len(paragraphs)})
    yield from article_images.illustrate(services, user_id, session, model, prompts, cancel)


def _write(model: ArticleModel, prompt: str, draft: ArticleDraft, cancel: threading.Event, saver: Saver) -> Iterator:
    """Stream the article's text into the draft (one block while it streams); returns (text, tokens).
    A last sentence cut off by the token limit is left out: the article ends on a whole sentence."""
    text, last = "", TextDelta()
    try:
        for delta in model.ask(prompt, writing_params(draft.params), cancel, checkpoint=saver.checkpoint):
            text, last = text + delta.text, delta
            draft.blocks = [ArticleBlock(text)]
            yield delta
        if last.finish_reason == "length":
            text = P.drop_unfinished(text)
        return text, last.completion_tokens
    finally:
        # However it ends, what was written is kept as paragraphs a user can edit.
        draft.blocks = [ArticleBlock(p) for p in P.split_paragraphs(text)]
