"""The image tab on real model code: tiny random-weight InternVL2 and XComposer2 checkpoints in the
official on-disk layout, loaded with remote code off through the launched app, driven over HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from studio.core.types import GenParams, ImagePart, Message, TextPart
from studio.images import load_image
from tests.e2e.helpers import connect, reply_text, wait_for
from tests.support.apps import running_app, write_config
from tests.support.hostile_images import ACCEPTED, HOSTILE
from tests.support.tiny_internvl2 import write_tiny_internvl2
from tests.support.tiny_xcomposer2 import write_tiny_xcomposer2
from tests.support.engine_calls import GenerationRequest, generate

MAX_NEW = 12


def picture(folder: Path, name: str = "photo.png", size=(800, 400)) -> Path:
    """A non-uniform picture, so tiles differ."""
    img = Image.new("RGB", size, (240, 240, 240))
    for x in range(0, size[0], 40):
        for y in range(0, size[1], 40):
            img.paste((x % 255, y % 255, (x + y) % 255), (x, y, x + 20, y + 20))
    path = folder / name
    img.save(path)
    return path


def launch(tmp: Path, model_dir: Path, extra: str = ""):
    cfg = write_config(tmp, engine="hf", model_path=str(model_dir), extra="")
    text = cfg.read_text().replace("    family: auto\n", "    family: auto\n    device: cpu\n" + extra)
    cfg.write_text(text)
    return running_app(cfg, tmp / "data")


@pytest.fixture(scope="module")
def internvl(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("internvl2")
    model = write_tiny_internvl2(tmp / "InternVL2-tiny")
    with launch(tmp, model, "    context_window: 1024\n") as running:
        yield running


@pytest.fixture(scope="module")
def xcomposer(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xcomposer2")
    model = write_tiny_xcomposer2(tmp / "xcomposer2-tiny")
    with launch(tmp, model) as running:
        yield running


def ask(client, text, files=(), tiles=2, max_new=MAX_NEW, api="/vision_ask"):
    job = client.submit({"text": text, "files": [handle_file(str(f)) for f in files]}, tiles, max_new, False,
                        api_name=api)
    outs = list(job)
    job.result()
    return outs, job.outputs()[-1]


def direct_answer(app, image_path: Path, text: str, tiles: int) -> str:
    """The same question asked of the loaded engine directly, greedy."""
    engine = app.services.engines.get("chat")
    params = app.services.config.engines["chat"].defaults.model_copy(update={"max_new_tokens": MAX_NEW, "do_sample": False})
    image = load_image(image_path).image
    request = GenerationRequest([Message("user", [ImagePart(image), TextPart(text)])], GenParams(**params.model_dump()),
                                max_tiles=tiles)
    return "".join(d.text for d in generate(engine, request))


@pytest.mark.parametrize("which", ["internvl", "xcomposer"])
def test_image_question_streams_the_models_own_answer(which, request, tmp_path):
    app = request.getfixturevalue(which)
    info = app.services.engines.get("chat").info()
    assert info.accepts_images and info.extra["source"] == "native"
    assert info.family == ("internvl2" if which == "internvl" else "xcomposer2")
    client, _ = connect(app.url)
    photo = picture(tmp_path)
    outs, final = ask(client, "What is in this picture?", [photo])
    texts = [reply_text(o[0]) for o in outs if o[0]]
    answer = reply_text(final[0])
    assert answer and answer == direct_answer(app, photo, "What is in this picture?", 2)
    assert len(set(texts)) >= 2  # it streamed
    cost = app.services.engines.get("chat").image_cost(load_image(photo).image, 2)
    assert cost.tokens == (3 * 256 + 2 if which == "internvl" else 1225)  # 2×1 tiles + thumbnail; CLIP 35×35
    assert f"photo.png: 800×400 → {cost.tiles} tile(s), {cost.tokens:,} tokens" in final[2]


def test_multi_turn_keeps_the_image_and_trims_history_that_overflows(internvl, tmp_path):
    client, _ = connect(internvl.url)
    ask(client, "First look.", [picture(tmp_path, "one.png")], tiles=3)
    _, final = ask(client, "Still there?", tiles=3)
    assert reply_text(final[0])
    _, final = ask(client, "And this one?", [picture(tmp_path, "two.png")], tiles=3)
    assert "earliest message(s) (1 image(s)) left out" in final[2] and "1,024-token context window" in final[2]
    assert reply_text(final[0])


def test_stop_ends_generation_promptly(internvl, tmp_path):
    client, _ = connect(internvl.url)
    engine = internvl.services.engines.get("chat")
    job = client.submit({"text": "Describe", "files": [handle_file(str(picture(tmp_path)))]}, 1, 700, False,
                        api_name="/vision_ask")
    started = time.monotonic()
    wait_for(lambda: job.outputs() and reply_text(job.outputs()[-1][0]), "the answer to start streaming",
             progress=lambda: len(job.outputs()))
    pace = (time.monotonic() - started) / len(job.outputs())  # this machine's seconds per update, now
    job.cancel()
    stopped = time.monotonic()
    wait_for(lambda: not engine._lock.locked(), "the engine to be free after Stop", step=0.02)
    # Freed by Stop, not by finishing 700 tokens: within a few dozen updates' time at this machine's pace.
    assert time.monotonic() - stopped < max(5.0, 40 * pace), "the engine is still generating after Stop"
    _, final = ask(client, "Short answer", tiles=1, max_new=3)
    assert reply_text(final[0])


# Over max_file_size, the upload itself is refused by the server (see the size-limit test below).
@pytest.mark.parametrize("case", sorted(set(HOSTILE) - {"huge_bytes"}))
def test_hostile_upload_gets_a_clear_message_then_a_good_request_works(case, internvl, tmp_path):
    filename, make, expected = HOSTILE[case]
    path = tmp_path / filename
    path.write_bytes(make())
    client, _ = connect(internvl.url)
    with pytest.raises(AppError) as err:
        ask(client, "What is this?", [path])
    assert expected.lower() in str(err.value).lower(), str(err.value)
    _, final = ask(client, "What is this?", [picture(tmp_path)], tiles=1, max_new=3)
    assert reply_text(final[0])


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_unusual_but_valid_images_are_answered(case, internvl, tmp_path):
    filename, make, check = ACCEPTED[case]
    path = tmp_path / filename
    path.write_bytes(make())
    client, _ = connect(internvl.url)
    _, final = ask(client, "What is this?", [path], tiles=1, max_new=3)
    assert reply_text(final[0])


def test_upload_over_the_size_limit_is_refused(internvl, tmp_path):
    import httpx

    big = b"\x89PNG\r\n\x1a\n" + bytes(100 * 1024 * 1024)
    r = httpx.post(internvl.url + "gradio_api/upload", files={"files": ("huge.png", big, "image/png")}, timeout=120)
    assert r.status_code == 413 and "exceeded maximum allowed size of 20971520 bytes" in r.text
    client, _ = connect(internvl.url)
    _, final = ask(client, "What is this?", [picture(tmp_path)], tiles=1, max_new=3)
    assert reply_text(final[0])


def test_json_extraction_on_a_model_that_cannot_answer_fails_clearly(internvl, tmp_path):
    client, _ = connect(internvl.url)
    job = client.submit({"text": "", "files": [handle_file(str(picture(tmp_path)))]},
                        '{"type": "object", "required": ["title"]}', "", 1, 1, 8, False, api_name="/vision_extract")
    job.result()
    result = job.outputs()[-1][3]
    assert result["attempts"] == 2 and result["error"].startswith("No schema-valid JSON after 2 attempt(s)")


def test_text_only_question_in_the_chat_tab_on_a_vision_model(internvl):
    client, _ = connect(internvl.url)
    out = client.predict("Hello there", max_new_tokens=4, do_sample=False, api_name="/chat")
    assert reply_text(out[0])
