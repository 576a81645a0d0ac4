"""A deterministic engine for UI tests (never instead of the real model path).

Tests tell it what to say: `engine.enqueue("first reply", "second reply")` queues replies, returned
in order, one per generation, streamed word by word. With nothing queued it falls back to its
script's default, "echo: <last user text>" unless the script says otherwise.

`model_path: "script:NAME"` picks a script from SCRIPTS (pace, load time, images, default reply);
`"script:NAME:REPLIES"` also queues the reply list REPLIES[REPLIES] at load, for processes a test
cannot reach (crash tests run the studio in a subprocess).

Nothing is registered on import: tests use the `scripted_engine` fixture (tests/conftest.py),
`running_app` registers it for its own lifetime, and launch_scripted.py registers it in main.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterator, Literal, Mapping, Optional

from pydantic import Field

from studio.core.types import EngineInfo, TextDelta
from studio.engines import ENGINES, EngineKind
from studio.engines.base import Encoded, EngineBase
from studio.engines.options import EngineOptions
from studio.families.base import ImageCost

XSS = ("Here: <img src=x onerror=\"window.__xss=1;alert(1)\"> <script>window.__xss=2</script> "
       "<a href=\"javascript:window.__xss=3\">link</a> **bold**")
LONG = " ".join(f"w{i}" for i in range(200))

# The article pipeline's replies, in the order it asks: the text, the image positions (one out of
# range), then one caption per position.
ARTICLE_TEXT = "Cats sleep a lot.\n\nA cat on the sofa is happy.\n\nCoffee in the morning.\n\nThe end of the story."
ARTICLE_POSITIONS = "<Seg1>, <Seg99>"
CAT_CAPTION = '"a cat sitting on a sofa"'
ARTICLE = (ARTICLE_TEXT, ARTICLE_POSITIONS, CAT_CAPTION)

REWRITTEN = "Rewrited paragraph."

# Reply lists a config can queue at load (`script:NAME:REPLIES`), for a studio in another process.
REPLIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"article": ARTICLE, "article_text": (ARTICLE_TEXT,), "rewrite": (REWRITTEN,)})


def _images(messages) -> list:
    return [im for m in messages for im in m.images]


def echo(messages, max_tiles) -> str:
    """The plain default: echo the last user text."""
    return "echo: " + (messages[-1].text if messages else "")


def vision_report(messages, max_tiles) -> str:
    """What the request holds: image count, sizes, the tile limit and the question."""
    imgs = _images(messages)
    sizes = ", ".join(f"{im.size[0]}x{im.size[1]}" for im in imgs)
    last = messages[-1].text if messages else ""
    return f"I see {len(imgs)} image(s) ({sizes}) tiles={max_tiles}. You asked: {last}"


def fixed(text: str) -> Callable:
    """A default that always says `text`."""
    return lambda messages, max_tiles: text


def counted_long(messages, max_tiles) -> str:
    """How many images were sent, then a long reply (Stop tests of the image tab)."""
    return f"saw{len(_images(messages))} {LONG}"


@dataclass(frozen=True)
class Script:
    """How the scripted engine behaves, apart from the replies a test queues."""

    delay: float = 0.02  # seconds before each word
    prefill: float = 0.0  # extra seconds before a reply's first word, like a model reading its prompt
    load_steps: int = 0  # load in this many 0.5 s steps, reporting progress like a real model
    load_gate: bool = False  # then keep loading until the file <cache dir>/load-gate exists (the test says when)
    images: bool = False  # whether it accepts images
    tools: bool = False  # whether it calls tools natively (queued replies then hold InternLM2's call markers)
    default: Callable = echo  # the reply with nothing queued: (messages, max_tiles) -> text


SCRIPTS: Mapping[str, Script] = MappingProxyType({
    "echo": Script(),
    "html": Script(default=fixed(XSS)),
    "slow": Script(delay=0.2, default=fixed(LONG)),
    "long": Script(default=fixed(LONG)),  # 200 words: a benchmark's replies run to max_new_tokens
    "slowload": Script(load_steps=6),
    "gatedload": Script(load_steps=1, load_gate=True),
    "vision": Script(images=True, default=vision_report),
    "agent": Script(tools=True),
    "slowvision": Script(delay=0.2, images=True, default=counted_long),
    # Slow enough to kill the studio mid-write: about 15 s for the article's text, 6 s for an edit.
    "slowarticle": Script(delay=0.5, prefill=5.0),
})


class ScriptedOptions(EngineOptions):
    """engine: scripted — `model_path: "script:NAME[:REPLIES]"` picks the script (and replies queued at load)."""

    engine: Literal["scripted"] = "scripted"
    model_path: str = "script:echo"
    # A batching engine's stand-in (bench/ui_path.py): this many requests at once, each at its own pace.
    max_batch_size: int = Field(1, ge=1, le=1024)
    token_s: Optional[float] = Field(None, gt=0, le=10)  # seconds before each word, instead of the script's

    def concurrency(self) -> int:
        """max_batch_size: the scripted engine streams every request on its own thread."""
        return self.max_batch_size

    def display_name(self) -> str:
        """The label, else the model path (as a folder's name would be)."""
        return self.label or self.model_path


class ScriptedEngine(EngineBase):
    """Replies with what was queued (else its script's default), one word at a time."""

    batches = False

    def __init__(self, script: Script = Script(), name: str = "echo",
                 options: ScriptedOptions = ScriptedOptions()) -> None:
        super().__init__(options, 512)
        self.script, self.name = script, name
        self.accepts_images = script.images
        self.batches = options.max_batch_size > 1
        self.tools = script.tools
        self._queue: deque[str] = deque()
        self._lock = threading.Lock()

    def enqueue(self, *replies: str) -> ScriptedEngine:
        """Queue replies for the next generations, in order."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def queued(self) -> list[str]:
        """Replies not yet given."""
        with self._lock:
            return list(self._queue)

    def clear(self) -> list[str]:
        """Drop the replies not yet given; returns them (a test's leftovers mean it asked fewer times)."""
        with self._lock:
            left = list(self._queue)
            self._queue.clear()
        return left

    def _reply_words(self, messages, max_tiles=None) -> list[str]:
        """The next reply's words: the oldest queued reply, else the script's default."""
        with self._lock:
            text = self._queue.popleft() if self._queue else None
        if text is None:
            text = self.script.default(messages, max_tiles)
        return text.split(" ")  # streamed joined by spaces, so newlines inside words survive

    def _stream_words(self, words: list[str], max_new: int, cancel: threading.Event) -> Iterator[TextDelta]:
        """Yield `words` (at most `max_new`) at the script's pace; stop early when `cancel` is set."""
        for i, w in enumerate(words[:max_new]):
            if cancel.is_set():
                yield TextDelta(finish_reason="cancelled", completion_tokens=i)
                return
            time.sleep(self.script.delay + (self.script.prefill if i == 0 else 0.0))
            yield TextDelta(("" if i == 0 else " ") + w)
        yield TextDelta(finish_reason="stop", completion_tokens=min(len(words), max_new))

    def _generate(self, prepared, cancel: threading.Event) -> Iterator[TextDelta]:
        words = self._reply_words(prepared.messages, prepared.max_tiles)
        return self._stream_words(words, prepared.params.max_new_tokens, cancel)

    def _encode(self, messages, max_tiles, final: bool, tools=()) -> Encoded:
        """Words + 4 per message, 100 per image (a 512-token window)."""
        return Encoded(sum(len(m.text.split()) + 4 + 100 * len(m.images) for m in messages), messages)

    def _image_cost(self, image, max_tiles) -> ImageCost:
        """One tile of 100 tokens, whatever the image."""
        return ImageCost(1, 100)

    def info(self) -> EngineInfo:
        """A fixed description with a 512-token window."""
        return EngineInfo("scripted", self.name, "none", "cpu", "none", 512, accepts_images=self.accepts_images)

    def close(self) -> None:
        """Nothing to free."""


def parse_model_path(model_path: str) -> tuple[str, Script, tuple[str, ...]]:
    """(script name, Script, replies to queue at load) for `script:NAME[:REPLIES]`."""
    name, _, replies = model_path.removeprefix("script:").partition(":")
    if name not in SCRIPTS:
        raise ValueError(f"unknown script {name!r}; known: {', '.join(SCRIPTS)}")
    if replies and replies not in REPLIES:
        raise ValueError(f"unknown reply list {replies!r}; known: {', '.join(REPLIES)}")
    return name, SCRIPTS[name], REPLIES.get(replies, ())


def load_scripted(cfg, ctx) -> ScriptedEngine:
    """The engine factory registered as "scripted"."""
    name, script, replies = parse_model_path(cfg.model_path)
    if cfg.token_s is not None:
        script = replace(script, delay=cfg.token_s)
    for i in range(script.load_steps):
        ctx.progress(i / script.load_steps, f"step {i + 1}/{script.load_steps}")
        time.sleep(0.5)
    while script.load_gate and not (Path(ctx.cache_dir) / "load-gate").exists():
        ctx.progress(0.9, "waiting for the test's gate")
        time.sleep(0.05)
    return ScriptedEngine(script, name, cfg).enqueue(*replies)


SCRIPTED = EngineKind(ScriptedOptions, load_scripted)


@contextmanager
def scripted_registered() -> Iterator[None]:
    """"scripted" in ENGINES for the block; a block inside another leaves the outer one's in place."""
    if "scripted" in ENGINES:
        if ENGINES.get("scripted") is not SCRIPTED:
            raise RuntimeError("another engine is registered as 'scripted'")
        yield
        return
    with ENGINES.registered("scripted", SCRIPTED):
        yield


def scripted(services, name: str = "chat") -> ScriptedEngine:
    """The loaded scripted engine `name` of `services` (loading it if needed), to enqueue replies on."""
    state = services.engines.wait(name, 300)
    engine = services.engines.get(name)
    if not isinstance(engine, ScriptedEngine):
        raise AssertionError(f"engine {name!r} is {type(engine).__name__}, not the scripted engine ({state})")
    return engine
