"""The article pipeline's model calls: one user message in, one reply out, through the turn loop."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Optional

from studio.core.article import ArticleParams
from studio.core.types import GenParams, ImagePart, Message, TextDelta, TextPart
from studio.engines.base import Engine
from studio.errors import InputError
from studio.services import Services
from studio.tasks import article_prompts as P
from studio.tasks import turn

GREEDY_SHORT = dict(do_sample=False, repetition_penalty=1.1, num_beams=1)


class Cancelled(Exception):
    """The user stopped the pipeline."""


@dataclass(frozen=True)
class Step:
    """Progress of one pipeline step."""

    key: str
    state: Literal["running", "done", "skipped", "failed", "cancelled"]
    seconds: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class ArticleModel:
    """The engine an article is written with: its name for the turn loop, the engine for what it can do."""

    services: Services
    name: str
    engine: Engine

    def ask(self, prompt: str, params: GenParams, cancel: threading.Event, images: Optional[list] = None,
            checkpoint: Optional[Callable[[turn.Reply], None]] = None) -> Iterator[TextDelta]:
        """Stream one reply to a single user message; returns its text. Raises Cancelled when stopped,
        InputError when the model fails."""
        parts = [ImagePart(im) for im in images or []] + [TextPart(prompt)]

        def refuse_failure(reply: turn.Reply) -> None:
            if reply.failed:
                raise InputError(f"The model failed: {reply.error}", "Try again; if it repeats, check the model.")

        reply = yield from turn.shown(turn.run(self.services, self.name, [Message("user", parts)], params, cancel,
                                               on_text=refuse_failure, checkpoint=checkpoint))
        if cancel.is_set():
            raise Cancelled()
        return reply.text

    def caption(self, image) -> str:
        """One short sentence about a picture (the gallery's captioner when it has no caption files)."""
        ask = Message("user", [ImagePart(image), TextPart("Describe this picture in one short sentence.")])
        reply = turn.complete(self.services, self.name, [ask], GenParams(max_new_tokens=40, do_sample=False),
                              max_tiles=1)
        return P.short(reply.text, 120)


def writing_params(p: ArticleParams, max_new: Optional[int] = None) -> GenParams:
    """Sampling settings for article text, from the demo's controls."""
    return GenParams(max_new_tokens=max_new or p.max_new_tokens, do_sample=p.do_sample, temperature=0.8, top_p=0.8,
                     top_k=40, repetition_penalty=p.repetition_penalty, seed=p.seed, num_beams=p.beams)
