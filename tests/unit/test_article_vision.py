"""The article pipeline with a vision model: it picks among candidates, and captions a gallery that
has no caption files (tiny random-weight InternVL2 in the official layout; a fixed-answer engine
for the deterministic choice)."""

from __future__ import annotations

import threading

import pytest
from PIL import Image

from studio.engines.hf_loading import HFOptions
from studio.core.article import Candidate
from studio.core.types import EngineInfo, TextDelta
from studio.engines.base import LoadContext, Placement, Prepared
from studio.engines.hf import load_hf_engine
from studio.sources.gallery import Gallery
from studio.tasks.article_images import pick
from studio.tasks.article_model import ArticleModel
from studio.tasks.article_prompts import prompts_for
from tests.support.engine_calls import serving
from tests.support.tiny_internvl2 import write_tiny_internvl2


class Answers:
    """An engine that sees images and always answers `text` (records what it was sent)."""

    accepts_images, batches = True, False

    def __init__(self, text):
        self.text, self.requests = text, []

    def prepare(self, messages, params, **kwargs):
        return Prepared(messages, params, 1, None)

    def stream(self, prepared, cancel):
        self.requests.append(prepared)
        yield TextDelta(self.text)
        yield TextDelta(finish_reason="stop")

    def info(self):
        return EngineInfo("fixed", "fixed", "none", "cpu", "none", 4096, accepts_images=True)


def as_model(engine) -> ArticleModel:
    return ArticleModel(serving(engine), "chat", engine)


def drain(gen):
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


@pytest.fixture()
def candidates(tmp_path):
    out = []
    for i, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        path = tmp_path / f"c{i}.png"
        Image.new("RGB", (64, 48), colour).save(path)
        out.append(Candidate(str(path), "gallery", 1.0 - i / 10, f"c{i}"))
    return out


def test_the_vision_model_choice_is_used(candidates):
    engine = Answers(" B.")
    assert drain(pick(as_model(engine), prompts_for("internvl2"), "A paragraph.", candidates, True, threading.Event())) == 1
    sent = engine.requests[0].messages[0]
    assert len(sent.images) == 3 and "最合适的图是" in sent.text
    # Switched off, or a text-only model: the retrieval order decides and nothing is asked.
    quiet = Answers("C")
    assert drain(pick(as_model(quiet), prompts_for("internvl2"), "p", candidates, False, threading.Event())) == 0
    assert quiet.requests == []
    assert drain(pick(as_model(Answers("no idea")), prompts_for("x"), "p", candidates, True, threading.Event())) == 0


def test_real_tiny_vision_model_picks_a_valid_candidate_and_captions_a_gallery(candidates, tmp_path):
    model = write_tiny_internvl2(tmp_path / "internvl2")
    cfg = HFOptions(model_path=str(model), device="cpu", dtype="float32")
    engine = load_hf_engine(cfg, LoadContext("v", Placement("cpu"), tmp_path, lambda f, t: None))
    try:
        k = drain(pick(as_model(engine), prompts_for("internvl2"), "A paragraph.", candidates, True, threading.Event()))
        assert 0 <= k < 3
        folder = tmp_path / "no-captions"
        folder.mkdir()
        Image.new("RGB", (80, 60), (10, 120, 200)).save(folder / "IMG_0001.png")

        class Counting:
            model_id, calls = "count", 0

            def encode(self, texts):
                import numpy as np

                Counting.calls += 1
                return np.ones((len(texts), 4), dtype="float32") / 2

        gallery = Gallery(folder, tmp_path / "cache", Counting(), captioner=as_model(engine).caption)
        found = gallery.search("anything", 1, set())
        assert found and found[0].label and found[0].label != "IMG 0001"  # written by the model, not the file name
        again = Gallery(folder, tmp_path / "cache", Counting(), captioner=as_model(engine).caption)
        assert again.search("anything", 1, set())[0].label == found[0].label  # cached caption
    finally:
        engine.close()
