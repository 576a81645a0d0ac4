"""The real InternLM2 `tokenizer.model` as a transformers fast tokenizer (tokenizer.json), no remote code.

Used where a library needs an HF tokenizer folder (lmdeploy, benchmarks on the GPU machine): the
SentencePiece model is converted by transformers (needs `sentencepiece` + `protobuf`), and the six
chat/agent special tokens are put at their official ids (92538–92543), where the SentencePiece
model holds `[UNUSED_TOKEN_141..146]`, exactly as the official tokenizer_config.json maps them.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.tiny_checkpoints import CHAT_TEMPLATE, SPECIALS


def write_internlm2_hf_tokenizer(spm: Path, folder: Path) -> Path:
    """tokenizer.json + tokenizer_config.json for `spm` in `folder`; returns the folder."""
    import shutil
    import tempfile

    from transformers import LlamaTokenizer, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(spm, Path(tmp) / "tokenizer.model")
        slow = LlamaTokenizer.from_pretrained(tmp, legacy=False, add_bos_token=True)
        data = json.loads(slow.backend_tokenizer.to_str())
    # InternLM2's SentencePiece model has add_dummy_prefix off: no "▁" before the text, none stripped.
    data["pre_tokenizer"]["prepend_scheme"] = "never"
    data["decoder"]["decoders"] = [d for d in data["decoder"]["decoders"] if d["type"] != "Strip"]
    vocab = data["model"]["vocab"]
    by_id = {i: piece for piece, i in vocab.items()}
    for i, name in SPECIALS.items():
        vocab[name] = vocab.pop(by_id[i])
    data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] not in SPECIALS] + [
        {"id": i, "content": name, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True} for i, name in sorted(SPECIALS.items())]
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="</s>",
                                  additional_special_tokens=list(SPECIALS.values()))
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(folder)
    return folder


def quiet_ids(tokenizer) -> list[int]:
    """Token ids that end a reply or show no text: specials, byte pieces and empty pieces.

    Random-weight checkpoints zero these rows of the output layer (logit 0, far below the maximum of
    92k random logits), so greedy replies run to max_new_tokens and every token shows as text."""
    n = len(tokenizer)
    shown = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=True)
    pieces = tokenizer.convert_ids_to_tokens(list(range(n)))
    return [i for i in range(n)
            if not shown[i].strip() or i in tokenizer.all_special_ids or str(pieces[i]).startswith("<0x")]
