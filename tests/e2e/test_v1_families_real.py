"""InternLM-Chat v1 and InternLM-XComposer v1 in the official layout (tiny random weights) through the
launched app: detected from config.json, loaded with remote code off, answering over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import handle_file
from PIL import Image

from studio.core.types import GenParams, ImagePart, Message, TextPart
from studio.images import load_image
from tests.e2e.helpers import chat, connect, reply_text
from tests.support.apps import running_app, write_config
from tests.support.engine_calls import GenerationRequest, generate
from tests.support.tiny_internlm1 import write_tiny_internlm1
from tests.support.tiny_xcomposer1 import write_tiny_xcomposer1

MAX_NEW = 12
GREEDY = dict(max_new_tokens=MAX_NEW, do_sample=False, repetition_penalty=1.0)


def launch(tmp: Path, model_dir: Path):
    cfg = write_config(tmp, engine="hf", model_path=str(model_dir))
    cfg.write_text(cfg.read_text().replace("    family: auto\n", "    family: auto\n    device: cpu\n"))
    return running_app(cfg, tmp / "data")


@pytest.fixture(scope="module")
def internlm(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("internlm1")
    with launch(tmp, write_tiny_internlm1(tmp / "internlm-chat-tiny")) as running:
        yield running


@pytest.fixture(scope="module")
def xcomposer(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xcomposer1")
    with launch(tmp, write_tiny_xcomposer1(tmp / "internlm-xcomposer-tiny")) as running:
        yield running


def direct(app, messages) -> str:
    """The same request asked of the loaded engine directly, greedy."""
    defaults = app.services.config.engines["chat"].defaults.model_dump()
    params = GenParams(**{**defaults, **GREEDY})
    return "".join(d.text for d in generate(app.services.engines.get("chat"), GenerationRequest(messages, params)))


def test_internlm_v1_chat_turn_is_the_models_own_greedy_answer(internlm):
    info = internlm.services.engines.get("chat").info()
    assert (info.family, info.extra["source"], info.accepts_images) == ("internlm", "native", False)
    client, _ = connect(internlm.url)
    outs, final = chat(client, "你好，请介绍一下你自己。", **GREEDY)
    answer = reply_text(final[0])
    assert answer and answer == direct(internlm, [Message.of("user", "你好，请介绍一下你自己。")])
    assert len({reply_text(o[0]) for o in outs if o[0]}) >= 2  # streamed
    # A second turn carries the first as a history record of the official chat() prompt.
    _, second = chat(client, "Tell me more.", **GREEDY)
    history = [Message.of("user", "你好，请介绍一下你自己。"), Message.of("assistant", answer), Message.of("user", "Tell me more.")]
    assert reply_text(second[0]) == direct(internlm, history)


def test_xcomposer_v1_image_question_is_the_models_own_answer(xcomposer, tmp_path):
    engine = xcomposer.services.engines.get("chat")
    info = engine.info()
    assert (info.family, info.extra["source"], info.accepts_images) == ("xcomposer", "native", True)
    photo = tmp_path / "photo.png"
    img = Image.new("RGB", (400, 300), (230, 230, 230))
    for x in range(0, 400, 40):
        img.paste((x % 255, 200 - x % 200, 60), (x, 0, x + 20, 300))
    img.save(photo)
    client, _ = connect(xcomposer.url)
    job = client.submit({"text": "What is in this picture?", "files": [handle_file(str(photo))]}, 1, MAX_NEW, False,
                        api_name="/vision_ask")
    list(job)
    final = job.outputs()[-1]
    answer = reply_text(final[0])
    question = Message("user", [ImagePart(load_image(photo).image), TextPart("What is in this picture?")])
    assert answer and answer == direct(xcomposer, [question])
    assert "photo.png: 400×300 → 1 tile(s), 10 tokens" in final[2]  # 8 Q-Former queries + 2 image flags


def test_xcomposer_v1_text_turn_in_the_chat_tab_uses_the_demos_meta_instruction(xcomposer):
    client, _ = connect(xcomposer.url)
    _, final = chat(client, "你好", **GREEDY)
    # Whether the session stores the default system prompt or leaves it to the family, the model gets
    # the demo's meta instruction (with its trailing newline) exactly once.
    assert reply_text(final[0]) == direct(xcomposer, [Message.of("user", "你好")])
