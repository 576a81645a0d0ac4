"""The image tab's API driven with gradio_client over real HTTP, on scripted engines (deterministic UI
behaviour: images reach the engine, costs and limits, JSON re-asking). Generation on real vision
checkpoints is tested in test_vision_real.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.e2e.helpers import connect, reply_text
from tests.support.apps import running_app, write_config
from tests.support.scripted import scripted

# The extraction tests' replies: schema-invalid JSON (in a fence), then what a re-asked model gives.
INVALID_JSON = '```json\n{"title": 5}\n```'
VALID_JSON = '{"title": "a cat", "objects": ["cat"]}'


def image_file(folder: Path, name: str, size=(64, 48), colour=(200, 30, 30)) -> str:
    path = folder / name
    Image.new("RGB", size, colour).save(path)
    return str(path)


def ask(client, text, files=(), tiles=6, api="/vision_ask", **kw):
    job = client.submit({"text": text, "files": [handle_file(f) for f in files]}, tiles, 64, False,
                        api_name=api, **kw)
    outs = list(job)
    job.result()  # raises AppError when the handler failed after its first update
    return outs, job.outputs()[-1]


@pytest.fixture(scope="module")
def vision_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vision")
    with running_app(write_config(tmp, model_path="script:vision"), tmp / "data") as running:
        yield running


@pytest.fixture(scope="module")
def json_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("json")
    with running_app(write_config(tmp, model_path="script:vision"), tmp / "data") as running:
        yield running


@pytest.fixture
def json_engine(json_app):
    """The JSON app's scripted engine; a test leaves none of the replies it queued unasked for."""
    engine = scripted(json_app.services)
    yield engine
    assert engine.clear() == [], "replies queued that extraction never asked for"


@pytest.fixture(scope="module")
def text_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text-only")
    with running_app(write_config(tmp, model_path="script:echo"), tmp / "data") as running:
        yield running


def test_image_reaches_the_model_and_shows_as_thumbnail(vision_app, tmp_path):
    client, _ = connect(vision_app.url)
    outs, final = ask(client, "What colour?", [image_file(tmp_path, "red.png")])
    chatbot, box, notice = final
    assert reply_text(chatbot) == "I see 1 image(s) (64x48) tiles=6. You asked: What colour?"
    thumbs = [m for m in chatbot if m["role"] == "user" and isinstance(m["content"], list)
              and any(isinstance(c, dict) and c.get("type") == "file" for c in m["content"])]
    assert thumbs, chatbot
    assert any(o[1] == {"text": "", "files": []} for o in outs)  # the input box is emptied
    assert "red.png: 64×48 → 1 tile(s), 100 tokens" in notice
    # Multi-turn: the next question needs no new upload, the earlier image stays in the conversation.
    _, final = ask(client, "And now?", tiles=3)
    assert reply_text(final[0]) == "I see 1 image(s) (64x48) tiles=3. You asked: And now?"
    # Two more images in one turn: three in the conversation.
    _, final = ask(client, "Compare", [image_file(tmp_path, "a.png", (10, 20)), image_file(tmp_path, "b.jpg", (30, 40))])
    assert reply_text(final[0]) == "I see 3 image(s) (64x48, 10x20, 30x40) tiles=6. You asked: Compare"


def test_image_without_question_is_described_and_presets_work(vision_app, tmp_path):
    client, _ = connect(vision_app.url)
    _, final = ask(client, "", [image_file(tmp_path, "x.png")])
    assert reply_text(final[0]).endswith("You asked: Describe this image in detail.")
    _, final = ask(client, "ignored", api="/vision_ocr")
    assert "Read all the text in this image" in reply_text(final[0])
    out = client.predict(6, 64, False, api_name="/vision_regenerate")
    assert "Read all the text in this image" in reply_text(out[0])


def test_question_without_any_image_is_refused_then_works(vision_app, tmp_path):
    client, _ = connect(vision_app.url)
    with pytest.raises(AppError, match="no image to ask about yet"):
        ask(client, "What is in it?")
    _, final = ask(client, "What is in it?", [image_file(tmp_path, "ok.png")])
    assert reply_text(final[0]).startswith("I see 1 image(s)")


def test_too_many_images_in_one_message(vision_app, tmp_path):
    client, _ = connect(vision_app.url)
    files = [image_file(tmp_path, f"i{i}.png", colour=(i, i, i)) for i in range(20)]
    with pytest.raises(AppError, match="20 images in one message; the limit is 8"):
        ask(client, "all of them", files)
    _, final = ask(client, "first two", files[:2])
    assert reply_text(final[0]).startswith("I see 2 image(s)")


def test_images_sent_to_a_text_only_model_get_a_clear_message(text_app, tmp_path):
    client, _ = connect(text_app.url)
    with pytest.raises(AppError, match="reads text only"):
        ask(client, "What is this?", [image_file(tmp_path, "t.png")])
    # The chat tab on the same model still works.
    out = client.predict("hello", api_name="/chat")
    assert reply_text(out[0]) == "echo: hello"


def test_json_extraction_re_asks_until_the_answer_matches_the_schema(json_app, json_engine, tmp_path):
    client, _ = connect(json_app.url)
    json_engine.enqueue(INVALID_JSON, VALID_JSON)
    schema = json.dumps({"type": "object", "properties": {"title": {"type": "string"},
                         "objects": {"type": "array", "items": {"type": "string"}}},
                         "required": ["title", "objects"]})
    job = client.submit({"text": "", "files": [handle_file(image_file(tmp_path, "cat.png"))]}, schema, "", 2, 6,
                        64, False, api_name="/vision_extract")
    job.result()
    chatbot, _, notice, result, download = job.outputs()[-1]
    assert result == {"title": "a cat", "objects": ["cat"]}
    assert json.loads(Path(download).read_text(encoding="utf-8")) == result
    # The transcript shows the failed attempt and the re-ask naming the problem.
    texts = [m["content"] if isinstance(m["content"], str) else json.dumps(m["content"]) for m in chatbot]
    assert any("5 is not of type 'string'" in t for t in texts), texts
    assert "Attempt 1" in notice


def test_json_extraction_fails_clearly_after_the_retry_budget(json_app, json_engine, tmp_path):
    client, _ = connect(json_app.url)
    json_engine.enqueue(INVALID_JSON)
    schema = json.dumps({"type": "object", "required": ["title", "objects"]})
    job = client.submit({"text": "", "files": [handle_file(image_file(tmp_path, "c.png"))]}, schema, "", 0, 6,
                        64, False, api_name="/vision_extract")
    job.result()
    result = job.outputs()[-1][3]
    assert result["attempts"] == 1 and "No schema-valid JSON after 1 attempt(s)" in result["error"]
    assert "'objects' is a required property" in result["error"]


def test_bad_schema_is_refused_before_anything_runs(json_app, json_engine, tmp_path):
    client, _ = connect(json_app.url)
    img = handle_file(image_file(tmp_path, "s.png"))
    with pytest.raises(AppError, match="not valid JSON"):
        client.predict({"text": "", "files": [img]}, "{not json", "", 1, 6, 64, False, api_name="/vision_extract")
    with pytest.raises(AppError, match="not a valid JSON Schema"):
        client.predict({"text": "", "files": [img]}, '{"type": 12}', "", 1, 6, 64, False, api_name="/vision_extract")


def test_thumbnails_live_in_the_studio_private_folder_and_a_planted_link_is_refused(vision_app, tmp_path):
    import os
    import stat

    client, _ = connect(vision_app.url)
    _, final = ask(client, "What colour?", [image_file(tmp_path, "blue.png", colour=(0, 0, 250))])
    assert reply_text(final[0]).startswith("I see 1 image(s)")
    thumbs = vision_app.services.files.root / "thumbs"
    written = list(thumbs.glob("*.png"))
    assert written and stat.S_IMODE(thumbs.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written)
    # Another user's link in place of the folder: refused with a message, the link's target untouched.
    attacker = tmp_path / "attacker"
    attacker.mkdir()
    thumbs.rename(tmp_path / "ours")
    os.symlink(attacker, thumbs)
    try:
        client, _ = connect(vision_app.url)
        with pytest.raises(AppError, match="thumbs: it is a symbolic link"):
            ask(client, "Again?", [image_file(tmp_path, "green.png", colour=(0, 250, 0))])
        assert list(attacker.iterdir()) == []
    finally:
        thumbs.unlink()
        (tmp_path / "ours").rename(thumbs)
    client, _ = connect(vision_app.url)
    _, final = ask(client, "And now?", [image_file(tmp_path, "green.png", colour=(0, 250, 0))])
    assert reply_text(final[0]).startswith("I see 1 image(s)")  # the next request is fine


def test_extracted_json_file_is_private(json_app, json_engine, tmp_path):
    import stat

    client, _ = connect(json_app.url)
    json_engine.enqueue(INVALID_JSON, VALID_JSON)
    schema = json.dumps({"type": "object", "required": ["title", "objects"]})
    job = client.submit({"text": "", "files": [handle_file(image_file(tmp_path, "card.png"))]},
                        schema, "", 2, 6, 64, False, api_name="/vision_extract")
    job.result()
    path = job.outputs()[-1][-1]
    assert path and Path(path).name == "extracted.json"
    exports = json_app.services.files.root / "exports"
    written = list(exports.glob("*/extracted.json"))
    assert written and all(stat.S_IMODE(p.parent.stat().st_mode) == 0o700 for p in written)
