"""The Models tab over HTTP: find tiny official-layout checkpoints in a new_models folder, refuse a partial
download, load one into the chat engine and get a reply from it."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from gradio_client.exceptions import AppError

from studio.tasks.models_find import MARKER
from tests.e2e.helpers import GREEDY, connect, reply_text, wait_for
from tests.support.apps import running_app, write_config
from tests.support.fake_hub import fake_hub, make_repo
from tests.support.tiny_checkpoints import write_tiny_internlm2


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("models")
    first = write_tiny_internlm2(tmp / "first")
    share = tmp / "new_models"
    other = write_tiny_internlm2(share / "Shanghai_AI_Laboratory" / "internlm2-chat-1_8b", seed=1)
    partial = shutil.copytree(other, share / "internlm" / "internlm2_5-7b-chat", copy_function=os.link)
    (partial / MARKER).write_text(json.dumps({"state": "downloading"}))
    cfg = write_config(tmp, engine="hf", model_path=str(first),
                       extra=f"models:\n  search_dirs: [{share}, {tmp / 'absent'}]\n")
    cfg.write_text(cfg.read_text().replace("    family: auto\n", "    family: auto\n    device: cpu\n"))
    (tmp / "hub").mkdir()
    with fake_hub(tmp / "hub") as hub, running_app(cfg, tmp / "data") as running:
        running.other, running.partial, running.absent, running.hub = other, partial, tmp / "absent", hub
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


def test_a_missing_repository_fails_with_its_message_in_both_languages(app):
    client, _ = connect(app.url)
    _jobs, _progress, job, _timer, notice = client.predict("huggingface", "internlm/no-such-model", "", app.hub.url,
                                                          api_name="/models_download")
    assert "started: internlm/no-such-model" in notice
    job_id = job["value"]
    state = wait_for(lambda: (s := app.services.downloads.state(job_id)).state not in ("queued", "listing") and s,
                     "the download to fail", progress=lambda: app.services.downloads.state(job_id))
    assert state.state == "failed" and state.error_key == "dl_not_found"
    jobs = client.predict(job_id, api_name="/models_jobs")[0]
    assert "was not found on Hugging Face" in jobs and "failed" in jobs
    zh, _ = connect(app.url, headers={"Cookie": "puyu-lang=zh"})
    jobs_zh = zh.predict(job_id, api_name="/models_jobs")[0]
    assert "在 Hugging Face 上找不到 internlm/no-such-model" in jobs_zh and "失败" in jobs_zh
    assert "not found" not in jobs_zh


def test_a_bad_repository_name_is_refused_before_any_request(app):
    client, _ = connect(app.url, headers={"Cookie": "puyu-lang=zh"})
    before = len(app.hub.served)
    with pytest.raises(AppError, match="不是有效的仓库名"):
        client.predict("modelscope", "../etc", "", app.hub.url, api_name="/models_download")
    assert len(app.hub.served) == before


def test_cancel_stops_a_download_and_keeps_its_bytes(app):
    make_repo(app.hub.root, "internlm/slow", {"config.json": b"{}", "big.bin": bytes(range(256)) * 4096})
    app.hub.faults.hold_after["big.bin"] = 300_000  # then the hub waits, as a slow network would
    client, _ = connect(app.url)
    job_id = client.predict("huggingface", "internlm/slow", "", app.hub.url, api_name="/models_download")[2]["value"]
    pool = app.services.downloads
    wait_for(lambda: pool.state(job_id).done_bytes >= 300_000, "the first bytes", progress=lambda: pool.state(job_id))
    progress = client.predict(job_id, api_name="/models_jobs")[1]
    assert "downloading" in progress and "now big.bin" in progress and "<progress" in progress
    jobs, _, _, _, notice = client.predict(job_id, api_name="/models_cancel")
    assert "cancelled; the partial files are kept" in notice
    state = wait_for(lambda: (s := pool.state(job_id)).state == "cancelled" and s, "the job to stop",
                     progress=lambda: pool.state(job_id))
    assert state.state == "cancelled"
    assert "cancelled" in client.predict(job_id, api_name="/models_jobs")[0]
    assert (app.services.downloads.default_dest("internlm/slow") / ".puyu-partial" / "big.bin.part").stat().st_size > 0
