"""The system panel over HTTP: device memory and models, unload / load, and switching a tab's model
at run time between tiny official-layout checkpoints (a bad path is refused and the old model stays)."""

from __future__ import annotations

import pytest
from gradio_client.exceptions import AppError

from tests.e2e.helpers import connect, reply_text, wait_for
from tests.support.apps import running_app, write_config
from tests.support.tiny_checkpoints import write_tiny_internlm2
from tests.support.tiny_internvl2 import write_tiny_internvl2


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("system")
    text_model = write_tiny_internlm2(tmp / "internlm2-tiny")
    cfg = write_config(tmp, engine="hf", model_path=str(text_model))
    cfg.write_text(cfg.read_text().replace("    family: auto\n", "    family: auto\n    device: cpu\n"))
    with running_app(cfg, tmp / "data") as running:
        running.vision_model = write_tiny_internvl2(tmp / "internvl2-tiny")
        yield running


def test_status_shows_memory_and_models(app):
    client, _ = connect(app.url)
    devices, models = client.predict(api_name="/system_status")[:2]
    assert "cpu (RAM)" in devices and "this studio" in devices
    assert 'status-ready"></span> ready' in models and "internlm2" in models and "native" not in models


def test_unload_then_a_message_loads_it_again(app):
    client, _ = connect(app.url)
    _, models = client.predict("chat", api_name="/system_unload")
    assert 'status-idle"></span> not loaded' in models
    out = client.predict("Hi", max_new_tokens=2, do_sample=False, api_name="/chat")
    assert reply_text(out[0])
    assert app.services.engines.state("chat").state == "ready"


def test_switch_to_a_vision_model_and_refuse_a_bad_path(app, tmp_path):
    client, _ = connect(app.url)
    with pytest.raises(AppError, match="Model path not found"):
        client.predict("chat", str(tmp_path / "nowhere"), api_name="/system_switch")
    assert app.services.engines.state("chat").state == "ready"  # the old model was not unloaded
    client.predict("chat", str(app.vision_model), api_name="/system_switch")
    wait_for(lambda: app.services.engines.state("chat").state == "ready", "the switched model to load",
             progress=lambda: app.services.engines.state("chat"))
    assert app.services.engines.get("chat").info().family == "internvl2"
    _, models = client.predict(api_name="/system_status")[:2]
    assert "internvl2" in models
