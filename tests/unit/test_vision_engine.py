"""The HF engine with vision families: token counting without pixels equals the real prompt, and
images sent to a text-only model are refused with a clear message (tiny official-layout checkpoints)."""

from __future__ import annotations

import pytest
from PIL import Image

from studio.engines.hf_loading import HFOptions
from studio.core.types import GenParams, ImagePart, Message, TextPart
from studio.engines.base import LoadContext, Placement
from studio.engines.hf import load_hf_engine
from studio.errors import InputError
from tests.support.tiny_checkpoints import write_tiny_internlm2
from tests.support.tiny_internvl2 import write_tiny_internvl2
from tests.support.tiny_xcomposer2 import write_tiny_xcomposer2
from tests.support.engine_calls import GenerationRequest, generate, prompt_tokens

WRITERS = {"internvl2": write_tiny_internvl2, "xcomposer2": write_tiny_xcomposer2, "internlm2": write_tiny_internlm2}


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    out = {}
    for name, write in WRITERS.items():
        folder = write(tmp_path_factory.mktemp(name) / name)
        cfg = HFOptions(model_path=str(folder), device="cpu", dtype="float32")
        out[name] = load_hf_engine(cfg, LoadContext(name, Placement("cpu"), folder.parent, lambda f, t: None))
    yield out
    for engine in out.values():
        engine.close()


def conversation():
    wide, tall = Image.new("RGB", (900, 300), (9, 99, 199)), Image.new("RGB", (200, 700), (250, 5, 5))
    return [Message("user", [ImagePart(wide), TextPart("What is this?")]), Message.of("assistant", "A band."),
            Message("user", [ImagePart(tall), TextPart("And this one?")])]


@pytest.mark.parametrize("name", ["internvl2", "xcomposer2"])
@pytest.mark.parametrize("tiles", [1, 3, 6])
def test_counting_without_pixels_equals_the_prepared_prompt(engines, name, tiles):
    engine, messages = engines[name], conversation()
    prepared = engine.prepare(messages, GenParams(max_new_tokens=1), max_tiles=tiles)
    inputs = prepared.payload  # ids with image placeholders, and the preprocessed images
    counted = engine._encode(prepared.messages, tiles, final=False).tokens  # how trimming counts: no pixels
    assert counted == prompt_tokens(engine, messages, tiles) == prepared.prompt_tokens == len(inputs.ids)
    assert len(inputs.pixel_values) == 2
    assert sum(inputs.image_tokens) == sum(engine.image_cost(m.images[0], tiles).tokens for m in messages if m.images)
    assert sum(c.tokens for c in prepared.image_costs) == sum(inputs.image_tokens)


def test_detected_families_and_native_loading(engines):
    assert {n: e.info().family for n, e in engines.items()} == {n: n for n in engines}
    assert all(e.info().extra["source"] == "native" for e in engines.values())
    assert engines["internvl2"].accepts_images and engines["xcomposer2"].accepts_images
    assert not engines["internlm2"].accepts_images


def test_images_to_a_text_only_model_are_refused(engines):
    engine = engines["internlm2"]
    with pytest.raises(InputError, match="reads text only; the conversation has 2 image"):
        generate(engine, GenerationRequest(conversation(), GenParams(max_new_tokens=2)))
    with pytest.raises(InputError, match="reads text only"):
        prompt_tokens(engine, conversation())
    out = list(generate(engine, GenerationRequest([Message.of("user", "Hi")], GenParams(max_new_tokens=2, do_sample=False))))
    assert out[-1].finish_reason in ("length", "stop")


@pytest.mark.parametrize("name", ["internvl2", "xcomposer2"])
def test_vision_model_answers_text_only_and_image_questions(engines, name):
    engine = engines[name]
    params = GenParams(max_new_tokens=4, do_sample=False)
    for messages in ([Message.of("user", "Hello")], conversation()):
        deltas = list(generate(engine, GenerationRequest(messages, params, max_tiles=2)))
        assert deltas[-1].finish_reason in ("length", "stop") and deltas[-1].prompt_tokens == prompt_tokens(engine, messages, 2)


def test_beam_search_returns_one_whole_reply_and_honours_cancel(engines):
    import threading

    engine = engines["internlm2"]
    params = GenParams(max_new_tokens=6, do_sample=False, num_beams=3, repetition_penalty=1.0)
    deltas = list(generate(engine, GenerationRequest([Message.of("user", "Hello")], params)))
    assert len(deltas) == 1 and deltas[0].finish_reason in ("length", "stop") and deltas[0].completion_tokens >= 1
    again = list(generate(engine, GenerationRequest([Message.of("user", "Hello")], params)))
    assert again[0].text == deltas[0].text  # deterministic
    cancel = threading.Event()
    cancel.set()
    stopped = list(generate(engine, GenerationRequest([Message.of("user", "Hello")], params, cancel)))
    assert stopped[-1].finish_reason == "cancelled"
