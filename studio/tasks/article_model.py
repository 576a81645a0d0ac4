"""The article pipeline's model calls: one user message in, one reply out, through the turn loop."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal, Optional

from studio.core.article import ArticleParams
from studio.core.types import GenParams, ImagePart, Message, Notice, TextDelta, TextPart
from studio.engines.base import Engine
from studio.errors import InputError
from studio.services import Services
from studio.tasks import article_prompts as P
from studio.tasks import turn
from studio.tasks.article_plan import SpeedLog

GREEDY_SHORT = dict(do_sample=False, repetition_penalty=1.1, num_beams=1)


class Cancelled(Exception):
    """The user stopped the pipeline."""


@dataclass(frozen=True)
class Step:
    """Progress of one pipeline step."""

    key: str
    state: Literal["running", "done", "skipped", "failed", "cancelled"]
    seconds: float = 0.0
    detail: str = ""  # what the step did: a string key (the UI words it in the page's language) …
    args: dict = field(default_factory=dict, compare=False)  # … and its values


@dataclass(frozen=True)
class ArticleModel:
    """The engine an article is written with: its name for the turn loop, the engine for what it can do."""

    services: Services
    name: str
    engine: Engine
    speeds: Optional[SpeedLog] = None  # where each reply's measured speed goes (the time estimates read it)

    def ask(self, prompt: str, params: GenParams, cancel: threading.Event, images: Optional[list] = None,
            checkpoint: Optional[Callable[[turn.Reply], None]] = None) -> Iterator[TextDelta]:
        """Stream one reply to a single user message; returns its text. Raises Cancelled when stopped,
        InputError when the model fails."""
        parts = [ImagePart(im) for im in images or []] + [TextPart(prompt)]

        def refuse_failure(reply: turn.Reply) -> None:
            if reply.failed:
                raise InputError(f"The model failed: {reply.error}", "Try again; if it repeats, check the model.")

        started = time.monotonic()
        reply = yield from turn.shown(turn.run(self.services, self.name, [Message("user", parts)], params, cancel,
                                               on_text=refuse_failure, checkpoint=checkpoint))
        if cancel.is_set():
            raise Cancelled()
        if self.speeds is not None and reply.finish_reason in ("stop", "length"):
            self.speeds.record(self.name, reply.completion_tokens, time.monotonic() - started)
        return reply.text

    def caption(self, image) -> str:
        """One short sentence about a picture (the gallery's captioner when it has no caption files)."""
        ask = Message("user", [ImagePart(image), TextPart("Describe this picture in one short sentence.")])
        reply = turn.complete(self.services, self.name, [ask], GenParams(max_new_tokens=40, do_sample=False),
                              max_tiles=1)
        return P.clean_caption(reply.text)


def writing_params(p: ArticleParams, max_new: Optional[int] = None) -> GenParams:
    """Sampling settings for article text, from the demo's controls."""
    return GenParams(max_new_tokens=max_new or p.max_new_tokens, do_sample=p.do_sample, temperature=0.8, top_p=0.8,
                     top_k=40, repetition_penalty=p.repetition_penalty, seed=p.seed, num_beams=p.beams)


def ready(services: Services, name: str, cancel: threading.Event) -> Iterator[Notice]:
    """turn.ready_engine, its loading notices keyed for the UI; returns the engine or None."""
    events = turn.ready_engine(services, name, cancel)
    while True:
        try:
            next(events)
        except StopIteration as end:
            return end.value
        progress = f"{services.engines.state(name).progress:.0%}"
        yield Notice(f"Waiting for the model to load ({progress})…", key="article_n_loading",
                     args={"progress": progress})
