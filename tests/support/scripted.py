"""A deterministic engine for UI tests (never instead of the real model path).

`model_path: "script:echo"` replies "echo: <last user text>" one word at a time;
`"script:html"` replies with hostile HTML; `"script:slow"` streams 200 words slowly; `"script:slowload"` is echo after a 3 s load;
`"script:vision"` reads images and says how many it saw and their sizes; `"script:json"` reads images and answers
an extraction request with schema-invalid JSON first and valid JSON once re-asked; `"script:article"` answers the
article pipeline's prompts (text, positions with one out of range, captions, edits) predictably;
`"script:slowvision"` reads images and streams 200 words slowly (Stop tests of the image tab);
`"script:slowarticle"` gives the same answers at 0.5 s a word after 5 s of "prefill" (about 15 s for the
article's text, 6 s for an edit).
"""

from __future__ import annotations

import time
from typing import Literal

from studio.core.types import EngineInfo, TextDelta
from studio.engines import ENGINES, EngineKind
from studio.engines.base import Encoded, EngineBase
from studio.engines.options import EngineOptions
from studio.families.base import ImageCost

XSS = ("Here: <img src=x onerror=\"window.__xss=1;alert(1)\"> <script>window.__xss=2</script> "
       "<a href=\"javascript:window.__xss=3\">link</a> **bold**")


class ScriptedOptions(EngineOptions):
    """engine: scripted — `model_path: "script:<name>"` picks the behaviour."""

    engine: Literal["scripted"] = "scripted"
    model_path: str = "script:echo"


class ScriptedEngine(EngineBase):
    accepts_images = False
    batches = False

    def __init__(self, script: str, delay: float, first_delay: float = 0.0,
                 options: ScriptedOptions = ScriptedOptions()) -> None:
        super().__init__(options, 512)
        self.script = script
        self.delay = delay
        self.first_delay = first_delay  # extra wait before a reply's first word, like a model's prefill
        self.accepts_images = script in ("vision", "json", "slowvision")

    def _words(self, messages, max_tiles):
        last = messages[-1].text if messages else ""
        if self.script == "html":
            return XSS.split(" ")
        if self.script == "vision":
            imgs = [im for m in messages for im in m.images]
            sizes = ", ".join(f"{im.size[0]}x{im.size[1]}" for im in imgs)
            return f"I see {len(imgs)} image(s) ({sizes}) tiles={max_tiles}. You asked: {last}".split(" ")
        if self.script == "article":
            return self._article(last).split(" ")
        if self.script == "json":
            if last.startswith("That answer cannot be used"):
                return ['{"title":', '"a', 'cat",', '"objects":', '["cat"]}']
            return ['```json\n{"title":', "5}\n```"]
        if self.script == "slow":
            return [f"w{i}" for i in range(200)]
        if self.script == "slowvision":
            return [f"saw{len([im for m in messages for im in m.images])}"] + [f"w{i}" for i in range(200)]
        return ["echo:"] + last.split(" ")

    @staticmethod
    def _article(prompt: str) -> str:
        if "should be followed by an image" in prompt:
            return "<Seg1>, <Seg99>"
        if "Write a short caption" in prompt:
            return '"a cat sitting on a sofa"' if "<Seg1>" in prompt.split("place after")[-1] else '"a cup of coffee"'
        for op in ("Rewrite", "Expand", "Shorten"):
            if prompt.startswith(op):
                return f"{op}d paragraph."
        if prompt.startswith("Write one paragraph that fits between"):
            return "Inserted paragraph."
        return "Cats sleep a lot.\n\nA cat on the sofa is happy.\n\nCoffee in the morning.\n\nThe end of the story."

    def _generate(self, prepared, cancel):
        words = self._words(prepared.messages, prepared.max_tiles)
        for i, w in enumerate(words[: prepared.params.max_new_tokens]):
            if cancel.is_set():
                yield TextDelta(finish_reason="cancelled", completion_tokens=i)
                return
            time.sleep(self.delay + (self.first_delay if i == 0 else 0.0))
            yield TextDelta(("" if i == 0 else " ") + w)
        yield TextDelta(finish_reason="stop", completion_tokens=len(words))

    def _encode(self, messages, max_tiles, final):
        return Encoded(sum(len(m.text.split()) + 4 + 100 * len(m.images) for m in messages), messages)

    def _image_cost(self, image, max_tiles):
        return ImageCost(1, 100)

    def info(self):
        return EngineInfo("scripted", self.script, "none", "cpu", "none", 512, accepts_images=self.accepts_images)

    def close(self):
        pass


def _scripted(cfg, ctx):
    script = cfg.model_path.removeprefix("script:")
    if script == "slowload":  # loads in 3 s, reporting progress like a real model
        for i in range(6):
            ctx.progress(i / 6, f"step {i + 1}/6")
            time.sleep(0.5)
        script = "echo"
    if script == "slowarticle":  # the article answers, slowly enough to kill the studio mid-write
        return ScriptedEngine("article", 0.5, first_delay=5.0, options=cfg)
    return ScriptedEngine(script, 0.2 if script in ("slow", "slowvision") else 0.02, options=cfg)


if "scripted" not in ENGINES:
    ENGINES.register("scripted")(EngineKind(ScriptedOptions, _scripted))
