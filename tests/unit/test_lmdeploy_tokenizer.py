"""The tokenizer overlay lmdeploy loads for official InternLM2 / InternVL2 checkpoints.

Under transformers 5 the checkpoints' own tokenizer code puts <|im_start|> at a new id past the
model's embedding rows; the overlay's tokenizer.json must give the official ids, the same ids as the
studio's native prompt builder, and leave the checkpoint folder untouched.
"""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("sentencepiece")
pytest.importorskip("google.protobuf", reason="the SentencePiece converter reads the model with protobuf")

from studio.core.types import Message  # noqa: E402
from studio.engines.lmdeploy_overlay import needs_overlay, overlay_for  # noqa: E402
from studio.families.internlm2 import InternLM2Family  # noqa: E402
from studio.families.sp_tokenizer import SPTokenizer  # noqa: E402
from tests.support.tiny_checkpoints import write_tiny_internlm2  # noqa: E402
from tests.support.tiny_internvl2 import write_tiny_internvl2  # noqa: E402

CONVERSATION = [Message.of("system", "Be brief."), Message.of("user", "你好, tell me a story about  two cats."),
                Message.of("assistant", "Once upon a time…"), Message.of("user", "def f(x):\n    return x ** 2")]


@pytest.fixture(scope="module")
def internlm2(tmp_path_factory):
    return write_tiny_internlm2(tmp_path_factory.mktemp("internlm2"))


def _snapshot(folder):
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_overlay_gives_the_official_ids_and_matches_the_native_prompt(internlm2, tmp_path):
    from transformers import AutoTokenizer

    assert needs_overlay(internlm2)
    before = _snapshot(internlm2)
    overlay = overlay_for(internlm2, tmp_path)
    assert _snapshot(internlm2) == before  # the checkpoint is never written to
    tok = AutoTokenizer.from_pretrained(overlay)
    assert tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>", "<|action_start|>", "<|plugin|>"]) == \
        [92543, 92542, 92541, 92538]
    assert len(tok) == 92544 and tok.eos_token_id == 2 and tok.bos_token_id == 1
    family = InternLM2Family()
    native = family.encode(SPTokenizer.from_dir(internlm2), CONVERSATION)
    text = family.build_prompt(tok, CONVERSATION)
    assert tok(text, add_special_tokens=False)["input_ids"] == native
    # Every other file of the checkpoint is reachable through the overlay, unchanged.
    for name in ("config.json", "model.safetensors.index.json", "tokenizer.model"):
        assert (overlay / name).is_symlink() and (overlay / name).read_bytes() == (internlm2 / name).read_bytes()
    assert json.loads((overlay / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_overlay_decodes_like_the_native_tokenizer(internlm2, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(overlay_for(internlm2, tmp_path))
    sp = SPTokenizer.from_dir(internlm2)
    text = "Hello world.\n\n  Two  spaces, 中文 and émoji 🙂."
    ids = sp.encode(text, add_special_tokens=False)
    assert tok(text, add_special_tokens=False)["input_ids"] == ids
    assert tok.decode(ids) == sp.decode(ids)


def test_internvl2_image_tokens_keep_their_ids(tmp_path):
    from transformers import AutoTokenizer

    model = write_tiny_internvl2(tmp_path / "internvl2")
    tok = AutoTokenizer.from_pretrained(overlay_for(model, tmp_path / "cache"), trust_remote_code=False)
    assert tok.convert_tokens_to_ids(["<img>", "</img>", "<IMG_CONTEXT>", "<|im_start|>"]) == [92544, 92545, 92546, 92543]
    ids = tok("<img><IMG_CONTEXT><IMG_CONTEXT></img>", add_special_tokens=False)["input_ids"]
    assert ids == [92544, 92546, 92546, 92545]


def test_overlay_is_reused_and_rebuilt_when_the_tokenizer_changes(internlm2, tmp_path):
    first = overlay_for(internlm2, tmp_path)
    assert overlay_for(internlm2, tmp_path) == first
    cfg = internlm2 / "tokenizer_config.json"
    data = json.loads(cfg.read_text())
    data["chat_template"] = "{{ messages[0]['content'] }}"
    cfg.write_text(json.dumps(data))
    os.utime(cfg, ns=(1, 1))
    second = overlay_for(internlm2, tmp_path)
    assert second != first
    assert json.loads((second / "tokenizer_config.json").read_text())["chat_template"] == data["chat_template"]


def test_checkpoints_with_their_own_fast_tokenizer_need_no_overlay(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    assert not needs_overlay(tmp_path)
