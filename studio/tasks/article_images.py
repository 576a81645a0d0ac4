"""Pictures for an article: where they go, what they show, which file, and the image edits."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

from studio.core.article import ArticleImage, ArticleSession, Candidate
from studio.core.types import GenParams, Notice
from studio.errors import StudioError
from studio.services import Services
from studio.tasks import article_prompts as P
from studio.tasks.article_model import GREEDY_SHORT, ArticleModel, Step
from studio.tasks.article_plan import CAPTION_TOKENS, PICK_TOKENS, POSITION_TOKENS

AUTO_SHARE = 3  # without a fixed count, fall back to about one image per three paragraphs
MAX_AUTO = 6


def even_positions(paragraphs: int, count: int) -> list[int]:
    """`count` positions spread evenly over the paragraphs (the fallback when the model's are unusable)."""
    if count >= paragraphs:
        return list(range(paragraphs))
    return sorted({min(paragraphs - 1, (i + 1) * paragraphs // (count + 1)) for i in range(max(0, count))})


def choose_positions(model: ArticleModel, prompts: P.Prompts, paragraphs: list[str], fixed: Optional[int],
                     cancel: threading.Event) -> Iterator:
    """Where the images go; returns (positions, how they were chosen, notices). A fixed count is spread
    evenly by rule (a small model's answer to "which paragraphs?" is rarely usable); only "auto" asks."""
    if fixed is not None:
        said = [Notice(f"{fixed} images were asked for, but the article has {len(paragraphs)} paragraph(s).",
                       key="article_n_fewer_paragraphs", args={"asked": fixed, "paragraphs": len(paragraphs)})]
        return even_positions(len(paragraphs), fixed), "spread", said if fixed > len(paragraphs) else []
    answer = yield from model.ask(prompts.positions(P.tag(paragraphs), ""),
                                  GenParams(max_new_tokens=POSITION_TOKENS, **GREEDY_SHORT), cancel)
    valid, rejected = P.parse_positions(answer, len(paragraphs))
    said = []
    if rejected:
        positions = ", ".join(map(str, rejected))
        said.append(Notice(f"Ignored position(s) {positions} that the model named: no such paragraph.", "warning",
                           key="article_n_positions_ignored", args={"positions": positions}))
    if valid:
        return sorted(valid), "model", said
    shown = (answer or "").strip().replace("\n", " ")[:60] or "—"
    said.append(Notice(f"The model's answer ({shown}) gave no usable positions; spread the images evenly instead.",
                       "warning", key="article_n_positions_spread", args={"answer": shown}))
    return even_positions(len(paragraphs), min(MAX_AUTO, max(1, len(paragraphs) // AUTO_SHARE))), "spread", said


def write_caption(model: ArticleModel, prompts: P.Prompts, paragraphs: list[str], position: int,
                  past: list[tuple[int, str]], cancel: threading.Event) -> Iterator:
    """The caption for the image after `position`, never repeating an earlier one; returns the text."""
    context = P.tag(paragraphs[: position + 2])
    answer = yield from model.ask(prompts.caption(context, past, position),
                            GenParams(max_new_tokens=CAPTION_TOKENS, **GREEDY_SHORT), cancel)
    caption = P.clean_caption(answer)
    if not caption or caption.lower() in {c.lower() for _, c in past}:
        # The demo's own fallback for an inserted image: the end of the paragraph it follows.
        caption = P.first_sentence(paragraphs[position]) or f"picture {position + 1}"
    return caption


def find_candidates(services: Services, session: ArticleSession, caption: str, used: set[str]) -> tuple[list[Candidate], list[str]]:
    """Candidates for a caption: this article's uploads first (never reused), then the configured sources."""
    from studio.sources.uploads import UploadSource

    k = services.config.article.candidates
    warnings: list[str] = []
    found: list[Candidate] = []
    if session.draft.uploads:
        found = UploadSource(session.draft.uploads).search(caption, k, used)
        if found:
            return found[:1], warnings  # an upload is placed as it is, as XComposer2 does with user images
    for source in services.image_sources():
        try:
            found += source.search(caption, k, used)
        except StudioError as exc:  # e.g. the embedding model is not installed: say so, try the next source
            warnings.append(str(exc))
        warnings += list(getattr(source, "last_warnings", lambda: [])())
    found.sort(key=lambda c: c.score, reverse=True)
    return found[:k], warnings


def pick(model: ArticleModel, prompts: P.Prompts, paragraph: str, candidates: list[Candidate], use_model: bool,
         cancel: threading.Event) -> Iterator:
    """Index of the best candidate: the vision model's choice when it can see, else the retrieval score."""
    if not (use_model and model.engine.accepts_images and len(candidates) > 1):
        return 0
    from studio.images import load_image

    letters = "ABCDEFGH"[: len(candidates)]
    images = [load_image(Path(c.path)).image for c in candidates]
    answer = yield from model.ask(prompts.pick(paragraph, letters), GenParams(max_new_tokens=PICK_TOKENS, **GREEDY_SHORT), cancel, images)
    match = re.search(f"[{letters}]", answer.upper())
    return letters.index(match.group(0)) if match else 0


def place(services: Services, user_id: str, session: ArticleSession, index: int, caption: str,
          candidates: list[Candidate], chosen: int) -> ArticleImage:
    """Copy the chosen file into the draft's own folder and attach it after paragraph `index`."""
    c = candidates[chosen]
    path = services.draft_files.adopt(user_id, session.draft.id, Path(c.path), caption)
    image = ArticleImage(str(path), caption, c.source, candidates, chosen)
    session.draft.blocks[index].image = image
    return image


def illustrate(services: Services, user_id: str, session: ArticleSession, model: ArticleModel, prompts: P.Prompts,
               cancel: threading.Event) -> Iterator:
    """Positions, captions, candidates and choices for the draft's paragraphs."""
    draft, params = session.draft, session.draft.params
    paragraphs = [b.text for b in draft.blocks]
    if params.image_count == 0:
        for key in ("positions", "captions", "images", "select"):
            yield Step(key, "skipped", detail="article_d_no_images")
        return
    t0 = time.monotonic()
    yield Step("positions", "running")
    positions, how, said = yield from choose_positions(model, prompts, paragraphs, params.image_count, cancel)
    yield from said
    yield Step("positions", "done", time.monotonic() - t0, f"article_d_positions_{how}",
               {"positions": ", ".join(f"¶{p + 1}" for p in positions)})
    t0, captions = time.monotonic(), []
    yield Step("captions", "running")
    for pos in positions:
        cap = yield from write_caption(model, prompts, paragraphs, pos, captions, cancel)
        captions.append((pos, cap))
    yield Step("captions", "done", time.monotonic() - t0, "article_d_captions",
               {"captions": "; ".join(c for _, c in captions)})
    yield from _fill(services, user_id, session, model, prompts, captions, cancel)


def attach_captioner(services: Services, model: ArticleModel) -> None:
    """Let galleries without caption files ask the vision model (when the engine can see images)."""
    if not model.engine.accepts_images:
        return
    for source in services.image_sources():
        if hasattr(source, "captioner") and source.captioner is None:
            source.captioner = model.caption


def _fill(services, user_id, session, model, prompts, captions, cancel) -> Iterator:
    attach_captioner(services, model)
    t0, used, placed, missing = time.monotonic(), set(), 0, []
    yield Step("images", "running")
    chosen_all = []
    for pos, cap in captions:
        found, warnings = find_candidates(services, session, cap, used)
        for w in dict.fromkeys(warnings):
            # The sources word their problems in English (file names, OS errors): the UI adds a lead-in.
            yield Notice(w, "warning", key="article_n_source", args={"problem": w})
        if not found:
            missing.append(cap)
            continue
        chosen_all.append((pos, cap, found))
        used.update(c.path for c in found[:1])
    yield Step("images", "done", time.monotonic() - t0, "article_d_candidates",
               {"n": sum(len(f) for _, _, f in chosen_all)})
    t0 = time.monotonic()
    yield Step("select", "running")
    taken: set[str] = set()
    for pos, cap, found in chosen_all:
        fresh = [c for c in found if c.path not in taken] or found  # one picture is not placed twice
        k = yield from pick(model, prompts, session.draft.blocks[pos].text, fresh, session.draft.params.model_selects,
                            cancel)
        taken.add(fresh[k].path)
        place(services, user_id, session, pos, cap, fresh, k)
        placed += 1
        yield Step("select", "running", detail="article_d_placed", args={"n": placed})  # the caller stores the draft
    if missing:
        captions = "; ".join(missing)
        yield Notice(f"No picture found for {len(missing)} caption(s) ({captions}).", "warning",
                     key="article_n_no_picture", args={"n": len(missing), "captions": captions})
    yield Step("select", "done", time.monotonic() - t0, "article_d_placed", {"n": placed})
