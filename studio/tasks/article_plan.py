"""Before Write: the engine's article settings, what the model can do (see images, write the title's
language), and how long the article will take. Decided here, once, for the UI and the API alike."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Optional

from studio.core.article import ArticleParams
from studio.services import Services

# Tokens each step asks for besides the text (article_images: positions, captions, the vision pick).
POSITION_TOKENS, CAPTION_TOKENS, PICK_TOKENS = 64, 40, 4
CALL_S = 0.5  # per model call: the prompt's prefill and the turn's own work, roughly, on a small model
SEARCH_S = 1.0  # per picture: retrieval from the gallery
AUTO_IMAGES = 2  # what "auto" is estimated with (article_images places about one per three paragraphs)
MIN_TIMED_TOKENS = 16  # a reply shorter than this says little about the model's speed
# Families whose models see images, and those known to read text only (others: unknown until loaded).
SEEING_FAMILIES = {"internvl2", "internvl2_5", "xcomposer", "xcomposer2"}
TEXT_FAMILIES = {"hf_chat_template", "internlm", "internlm2", "internlm3", "plain_text"}

# Scripts that name a language unambiguously; Latin script is only "en" when it is plain ASCII.
# Kana comes before Han: Japanese mixes both, Chinese never has kana.
SCRIPTS = (("ja", re.compile(r"[\u3040-\u30ff]")), ("zh", re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")),
           ("ko", re.compile(r"[\uac00-\ud7af]")),
           ("ru", re.compile(r"[\u0400-\u04ff]")), ("ar", re.compile(r"[\u0600-\u06ff]")))


def defaults(services: Services, engine: str) -> ArticleParams:
    """The article settings for `engine`: its config's `article` block, vision picking only when it sees images."""
    params = services.engines.config_of(engine).article
    if params.model_selects and sees_images(services, engine) is False:
        params = params.model_copy(update={"model_selects": False})
    return params


def sees_images(services: Services, engine: str) -> Optional[bool]:
    """Whether `engine` sees images: the loaded engine's answer, else its family's; None while unknown."""
    pool = services.engines
    if pool.state(engine).state == "ready":
        return bool(pool.get(engine).accepts_images)
    family = pool.config_of(engine).family
    return True if family in SEEING_FAMILIES else False if family in TEXT_FAMILIES else None


def title_language(text: str) -> Optional[str]:
    """The language a title is written in, as far as its script tells (None: cannot tell)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return None
    for lang, script in SCRIPTS:
        if script.search(text):
            return lang
    return "en" if all(c.isascii() for c in letters) else None


def unwritable_language(services: Services, engine: str, title: str) -> Optional[str]:
    """The title's language when the model's config says it cannot write it (None: fine, or unknown)."""
    languages = services.engines.config_of(engine).languages
    lang = title_language(title or "")
    return lang if languages and lang and lang not in languages else None


@dataclass(frozen=True)
class Estimate:
    """How long Write will take: seconds, the tokens planned, and the speed used (measured or configured)."""

    seconds: float
    tokens: int
    tokens_per_s: float
    measured: bool


class SpeedLog:
    """How fast each engine wrote article text lately: tokens over seconds of its last RECENT_CALLS model calls
    together (one per app; replies report to it). Summing calls weighs each by its length, so a short caption,
    mostly prompt time, does not stand for the whole article; the seconds include each call's prompt, which
    an article's wait includes too."""

    RECENT_CALLS = 20

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, list[tuple[int, float]]] = {}

    def record(self, engine: str, tokens: int, seconds: float) -> None:
        """Remember a reply of `tokens` that took `seconds` (empty ones are ignored)."""
        if tokens > 0 and seconds > 0:
            with self._lock:
                calls = self._calls.setdefault(engine, [])
                calls.append((tokens, seconds))
                del calls[:-self.RECENT_CALLS]

    def get(self, engine: str) -> Optional[float]:
        """Tokens per second of `engine` over its recent calls once they add up to MIN_TIMED_TOKENS, or None."""
        with self._lock:
            calls = self._calls.get(engine, [])
            tokens, seconds = sum(c[0] for c in calls), sum(c[1] for c in calls)
        return tokens / seconds if tokens >= MIN_TIMED_TOKENS and seconds > 0 else None


def planned_calls(params: ArticleParams, sees: bool) -> tuple[int, int, int]:
    """(tokens, model calls, pictures) Write will ask for with `params`."""
    images = AUTO_IMAGES if params.image_count is None else params.image_count
    tokens, calls = params.max_new_tokens * params.beams, 1
    if images:
        tokens += CAPTION_TOKENS * images + (POSITION_TOKENS if params.image_count is None else 0)
        calls += images + (params.image_count is None)
        if params.model_selects and sees:
            tokens, calls = tokens + PICK_TOKENS * images, calls + images
    return tokens, calls, images


def estimate(services: Services, engine: str, params: ArticleParams, speeds: SpeedLog) -> Optional[Estimate]:
    """How long Write will take on `engine` (None: no speed is known yet)."""
    measured = speeds.get(engine)
    speed = measured or services.engines.config_of(engine).tokens_per_s
    if not speed:
        return None
    tokens, calls, images = planned_calls(params, bool(sees_images(services, engine)))
    return Estimate(tokens / speed + calls * CALL_S + images * SEARCH_S, tokens, speed, measured is not None)
