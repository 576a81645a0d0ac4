"""Whether the image tab's model reads images, before and after it loads (what picks panel or inputs)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from studio.config import StudioConfig, load_config
from studio.core.types import EngineInfo
from studio.errors import ModelNotFound
from studio.services import LoadState, build_services
from studio.tasks import vision
from tests.support.apps import EMBEDDED_CONFIG
from tests.support.tiny_internvl2 import write_tiny_internvl2


def _services(tmp_path, block: dict):
    return build_services(StudioConfig(engines={"chat": block}), tmp_path / "data")


def test_the_default_embedded_model_reads_text_only_before_it_loads(tmp_path):
    services = build_services(load_config(EMBEDDED_CONFIG), tmp_path / "data")
    assert services.engines.state("chat").state == "idle" and vision.sees_images(services) is False


@pytest.mark.parametrize("block, sees", [
    ({"engine": "hf", "model_path": "/nowhere", "family": "internvl2"}, True),
    ({"engine": "hf", "model_path": "/nowhere", "family": "xcomposer2"}, True),
    ({"engine": "hf", "model_path": "/nowhere", "family": "internlm2"}, False),
    ({"engine": "hf", "model_path": "/nowhere", "family": "auto"}, False),  # nothing there: loading fails too
    ({"engine": "openai_compat", "base_url": "http://h:1/v1", "accepts_images": False}, False),
    ({"engine": "openai_compat", "base_url": "http://h:1/v1"}, True),  # the server says once asked
])
def test_the_config_says_before_loading(tmp_path, block, sees):
    assert vision.sees_images(_services(tmp_path, block)) is sees


def test_an_auto_family_is_read_from_the_folder(tmp_path):
    model = write_tiny_internvl2(tmp_path / "InternVL2-tiny")
    assert vision.sees_images(_services(tmp_path, {"engine": "hf", "model_path": str(model)})) is True
    assert vision.folder_sees_images(str(model)) is True
    with pytest.raises(ModelNotFound, match="not found"):
        vision.folder_sees_images(str(tmp_path / "nowhere"))


def test_once_loaded_the_engine_decides_and_a_failed_load_reads_nothing(tmp_path):
    services = _services(tmp_path, {"engine": "hf", "model_path": "/nowhere", "family": "internvl2"})
    slot = services.engines._slots["chat"]
    info = EngineInfo("hf", "m", "internvl2", "cpu", "float32", 512, accepts_images=False)
    slot.state = LoadState("ready", 1.0, "ready", info=info)
    assert vision.sees_images(services) is False
    slot.state = replace(slot.state, info=replace(info, accepts_images=True))
    assert vision.sees_images(services) is True
    slot.state = LoadState("failed", error="boom")
    assert vision.sees_images(services) is False


def test_switch_can_replace_the_family(tmp_path):
    model = write_tiny_internvl2(tmp_path / "InternVL2-tiny")
    services = build_services(load_config(EMBEDDED_CONFIG), tmp_path / "data")
    services.engines.start = lambda name=None: None  # check the new config only; nothing loads here
    services.engines.switch("chat", str(model), family="auto")
    cfg = services.engines.config_of("chat")
    assert (cfg.family, cfg.model_path, cfg.gguf_file) == ("auto", str(model), None)
    assert vision.sees_images(services) is True
