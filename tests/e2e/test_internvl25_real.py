"""The image tab on a tiny InternVL3 checkpoint (Qwen2.5 language model, official layout, remote code off),
loaded with family auto through the launched app and driven over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import handle_file
from PIL import Image

from studio.core.types import GenParams, ImagePart, Message, TextPart
from studio.images import load_image
from tests.e2e.helpers import connect, reply_text
from tests.support.apps import running_app, write_config
from tests.support.engine_calls import GenerationRequest, generate
from tests.support.tiny_internvl25 import write_tiny_internvl25

MAX_NEW = 10


def picture(folder: Path, name: str = "photo.png", size=(800, 400)) -> Path:
    """A non-uniform picture, so tiles differ."""
    img = Image.new("RGB", size, (240, 240, 240))
    for x in range(0, size[0], 40):
        for y in range(0, size[1], 40):
            img.paste((x % 255, y % 255, (x + y) % 255), (x, y, x + 20, y + 20))
    path = folder / name
    img.save(path)
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("internvl3")
    model = write_tiny_internvl25(tmp / "InternVL3-tiny", "internvl3")
    cfg = write_config(tmp, engine="hf", model_path=str(model), extra="")
    cfg.write_text(cfg.read_text().replace("    family: auto\n", "    family: auto\n    device: cpu\n"
                                                                 "    context_window: 2048\n"))
    with running_app(cfg, tmp / "data") as running:
        yield running


def ask(client, text, files=(), tiles=2, max_new=MAX_NEW):
    job = client.submit({"text": text, "files": [handle_file(str(f)) for f in files]}, tiles, max_new, False,
                        api_name="/vision_ask")
    outs = list(job)
    job.result()
    return outs, job.outputs()[-1]


def direct_answer(app, messages, tiles: int) -> str:
    """The same conversation asked of the loaded engine directly, greedy."""
    engine = app.services.engines.get("chat")
    request = GenerationRequest(messages, GenParams(max_new_tokens=MAX_NEW, do_sample=False), max_tiles=tiles)
    return "".join(d.text for d in generate(engine, request))


def test_image_question_on_internvl3_through_the_image_tab(app, tmp_path):
    engine = app.services.engines.get("chat")
    info = engine.info()
    assert info.family == "internvl2_5" and info.accepts_images and info.extra["source"] == "native"
    client, _ = connect(app.url)
    photo = picture(tmp_path)
    outs, final = ask(client, "What is in this picture?", [photo])
    answer = reply_text(final[0])
    image = load_image(photo).image
    question = [Message("user", [ImagePart(image), TextPart("What is in this picture?")])]
    assert answer and answer == direct_answer(app, question, 2)
    assert len({reply_text(o[0]) for o in outs if o[0]}) >= 2  # it streamed
    cost = engine.image_cost(image, 2)
    assert cost.tokens == 3 * 256 + 2  # 2×1 tiles + thumbnail, <img> and </img>
    assert f"photo.png: 800×400 → {cost.tiles} tile(s), {cost.tokens:,} tokens" in final[2]
    # A follow-up keeps the image in the conversation, in the internvl2_5 template.
    _, final = ask(client, "What colour is it?")
    follow = [*question, Message.of("assistant", answer), Message.of("user", "What colour is it?")]
    assert reply_text(final[0]) == direct_answer(app, follow, 2)


def test_text_question_in_the_chat_tab_on_internvl3(app):
    client, _ = connect(app.url)
    out = client.predict("Hello there", max_new_tokens=4, do_sample=False, api_name="/chat")
    assert reply_text(out[0])
