"""The Models tab over HTTP: find tiny official-layout checkpoints in a new_models folder, refuse a partial
download, load one into the chat engine and get a reply from it."""

from __future__ import annotations

import json
import shutil

import pytest
from gradio_client.exceptions import AppError

from studio.hub.find import MARKER
from tests.e2e.helpers import GREEDY, connect, reply_text, wait_for
from tests.support.apps import running_app, write_config
from tests.support.tiny_checkpoints import write_tiny_internlm2


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("models")
    first = write_tiny_internlm2(tmp / "first")
    share = tmp / "new_models"
    other = write_tiny_internlm2(share / "Shanghai_AI_Laboratory" / "internlm2-chat-1_8b", seed=1)
    partial = shutil.copytree(other, share / "internlm" / "internlm2_5-7b-chat")
    (partial / MARKER).write_text(json.dumps({"state": "downloading"}))
    cfg = write_config(tmp, engine="hf", model_path=str(first),
                       extra=f"models:\n  search_dirs: [{share}, {tmp / 'absent'}]\n")
    cfg.write_text(cfg.read_text().replace("    family: auto\n", "    family: auto\n    device: cpu\n"))
    with running_app(cfg, tmp / "data") as running:
        running.other, running.partial, running.absent = other, partial, tmp / "absent"
        yield running


def test_find_lists_what_is_there_and_offers_only_complete_ones(app):
    client, _ = connect(app.url)
    folders, table, pick, _engine = client.predict(api_name="/models_find")
    assert f"`{app.absent}` (absent)" in folders
    assert "Shanghai_AI_Laboratory/internlm2-chat-1_8b" in table and "internlm2" in table
    assert "internlm/internlm2_5-7b-chat" in table and "partial download" in table
    assert "fits (needs" in table
    assert pick["value"] == str(app.other)
    assert [path for _, path in pick["choices"]] == [str(app.other)]  # the partial one is never offered


def test_a_partial_download_is_refused_and_the_old_model_stays(app):
    client, _ = connect(app.url)
    with pytest.raises(AppError, match="not a complete download"):
        client.predict(str(app.partial), "chat", api_name="/models_load")
    assert app.services.engines.config_of("chat").model_path != str(app.partial)


def test_load_into_the_chat_engine_then_it_replies(app):
    client, _ = connect(app.url)
    notice = client.predict(str(app.other), "chat", api_name="/models_load")
    assert "Loading Shanghai_AI_Laboratory/internlm2-chat-1_8b into chat" in notice
    wait_for(lambda: app.services.engines.state("chat").state in ("ready", "failed"), "the new model to load",
             progress=lambda: app.services.engines.state("chat"))
    assert app.services.engines.state("chat").state == "ready", app.services.engines.state("chat")
    assert app.services.engines.config_of("chat").model_path == str(app.other)
    out = client.predict("Hello", max_new_tokens=4, api_name="/chat", **GREEDY)
    assert reply_text(out[0])
