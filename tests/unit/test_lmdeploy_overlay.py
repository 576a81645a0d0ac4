"""The overlay's configuration shim for InternVL-style checkpoints.

InternVL's own configuration class raises when it is built without arguments; transformers 5 (seen with
5.17 under lmdeploy) builds such a default instance when it logs a loaded configuration unless the class
has `has_no_defaults_at_init`. lmdeploy then fell back to a configuration whose `llm_config` is a dict
and its engine died. The test checkpoint carries a configuration module written here that behaves the
same way (composite, raises without an architecture).
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sentencepiece")
pytest.importorskip("google.protobuf", reason="the SentencePiece converter reads the model with protobuf")

from studio.engines.lmdeploy_overlay import SHIM, config_class_ref, needs_overlay, overlay_for  # noqa: E402
from tests.support.tiny_internvl2 import write_tiny_internvl2  # noqa: E402

CONFIG_MODULE = '''
from transformers import LlamaConfig, PretrainedConfig


class InternVLChatConfig(PretrainedConfig):
    model_type = "internvl_chat"
    is_composition = True

    def __init__(self, vision_config=None, llm_config=None, downsample_ratio=0.5, **kwargs):
        super().__init__(**kwargs)
        llm_config = llm_config or {"architectures": [""]}
        if llm_config["architectures"][0] != "InternLM2ForCausalLM":
            raise ValueError("Unsupported architecture: " + llm_config["architectures"][0])
        keep = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
        self.llm_config = LlamaConfig(**{k: v for k, v in llm_config.items() if k in keep})
        self.vision_config = dict(vision_config or {})
        self.downsample_ratio = downsample_ratio
'''


@pytest.fixture()
def internvl2(tmp_path):
    folder = write_tiny_internvl2(tmp_path / "internvl2")
    (folder / "configuration_internvl_chat.py").write_text(CONFIG_MODULE, encoding="utf-8")
    return folder


def _snapshot(folder):
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}


def test_the_checkpoint_class_cannot_be_built_without_arguments(internvl2):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(internvl2, trust_remote_code=True)
    assert not getattr(type(config), "has_no_defaults_at_init", False)
    with pytest.raises(ValueError, match="Unsupported architecture"):
        type(config)()  # what transformers 5.17 does when it logs this configuration


def test_overlay_names_a_subclass_that_transformers_does_not_build_bare(internvl2, tmp_path):
    from transformers import AutoConfig

    before = _snapshot(internvl2)
    assert config_class_ref(internvl2) == ("configuration_internvl_chat", "InternVLChatConfig")
    overlay = overlay_for(internvl2, tmp_path / "cache")
    auto_map = json.loads((overlay / "config.json").read_text())["auto_map"]
    assert auto_map["AutoConfig"] == f"{SHIM}.InternVLChatConfig"
    assert auto_map["AutoModel"] == "modeling_internvl_chat.InternVLChatModel"
    config = AutoConfig.from_pretrained(overlay, trust_remote_code=True)
    assert type(config).has_no_defaults_at_init is True
    assert type(config).__mro__[1].__module__.endswith("configuration_internvl_chat")
    assert config.llm_config.hidden_size == 64 and config.downsample_ratio == 0.5
    assert json.loads(config.to_json_string())["llm_config"]["hidden_size"] == 64
    assert _snapshot(internvl2) == before


def test_overlay_is_rebuilt_when_config_json_changes(internvl2, tmp_path):
    first = overlay_for(internvl2, tmp_path)
    data = json.loads((internvl2 / "config.json").read_text())
    data["downsample_ratio"] = 0.25
    (internvl2 / "config.json").write_text(json.dumps(data))
    second = overlay_for(internvl2, tmp_path)
    assert second != first
    assert json.loads((second / "config.json").read_text())["downsample_ratio"] == 0.25


@pytest.mark.parametrize("ref, module_file", [("OpenGVLab/InternVL2-2B--configuration_internvl_chat.InternVLChatConfig",
                                               True), ("configuration_internvl_chat.InternVLChatConfig", False),
                                              ("os.system", False)])
def test_no_shim_without_a_local_configuration_module(tmp_path, ref, module_file):
    (tmp_path / "config.json").write_text(json.dumps({"auto_map": {"AutoConfig": ref}, "llm_config": {}}))
    if module_file:
        (tmp_path / "configuration_internvl_chat.py").write_text("")
    assert config_class_ref(tmp_path) is None
    assert not needs_overlay(tmp_path)


def test_plain_configurations_need_no_shim(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"auto_map": {"AutoConfig": "configuration_internlm2.X"}}))
    (tmp_path / "configuration_internlm2.py").write_text("")
    assert config_class_ref(tmp_path) is None
