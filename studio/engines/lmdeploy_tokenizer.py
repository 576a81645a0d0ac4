"""The official InternLM2 / InternVL2 tokenizer as a `tokenizer.json` lmdeploy can load with the right ids.

The official checkpoints ship their tokenizer as Python code (tokenization_internlm2*.py) and, in
tokenizer_config.json, give special meanings to existing SentencePiece pieces: ids 92538–92543
([UNUSED_TOKEN_141..146]) become <|plugin|> … <|im_start|>. transformers 5 appends such tokens as new
ids instead (<|im_start|> becomes 92549, past InternLM2's 92 544 embedding rows), and lmdeploy loads
its tokenizer through transformers: every chat prompt would carry ids the model does not have.

So the studio writes a fast tokenizer with the ids the checkpoint means (converted by transformers
from tokenizer.model, then the special tokens put at their ids) into the overlay folder that lmdeploy
loads (lmdeploy_overlay). Needs `sentencepiece` and `protobuf` (both come with lmdeploy).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def needs_tokenizer(model_dir: Path) -> bool:
    """True for a checkpoint whose tokenizer is tokenizer.model + remote code with renamed special tokens."""
    cfg = read_json(model_dir / "tokenizer_config.json")
    remote = "AutoTokenizer" in (cfg.get("auto_map") or {})
    return (model_dir / "tokenizer.model").is_file() and remote and bool(cfg.get("added_tokens_decoder"))


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def fast_tokenizer_json(model_dir: Path) -> dict:
    """tokenizer.json contents for the checkpoint's tokenizer.model with its special tokens at their ids.

    Built with `tokenizers` from the SentencePiece model as transformers' converter reads it (BPE vocab
    and merges, byte fallback; user-defined pieces stay whole), without a slow-tokenizer round trip."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import SentencePieceExtractor

    extractor = SentencePieceExtractor(str(model_dir / "tokenizer.model"))
    spm = extractor.extract(BPE)
    vocab, merges = dict(spm["vocab"]), spm["merges"]
    by_id = {i: piece for piece, i in vocab.items()}
    config = read_json(model_dir / "tokenizer_config.json")
    specials = {int(i): t for i, t in config["added_tokens_decoder"].items()}
    for i, tok in specials.items():  # the checkpoint's meaning of an id wins over the piece stored there
        if by_id.get(i) != tok["content"]:
            vocab.pop(by_id.get(i), None)
            vocab[tok["content"]] = i
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    # InternLM2's SentencePiece model has add_dummy_prefix off: no "▁" is put before the text or stripped.
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=False)
    tokenizer.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    user_defined = [p for _, p in sorted((vocab[str(t)], str(t)) for t in spm["additional_special_tokens"]
                                         if not t.special and str(t) in vocab)]
    tokenizer.add_tokens([AddedToken(p, normalized=False, special=False) for p in user_defined])
    tokenizer.add_special_tokens([AddedToken(t["content"], normalized=False, special=t.get("special", True),
                                             lstrip=t.get("lstrip", False), rstrip=t.get("rstrip", False))
                                  for _, t in sorted(specials.items())])
    bos = config.get("bos_token") or "<s>"
    bos = bos["content"] if isinstance(bos, dict) else bos
    if config.get("add_bos_token", True) and bos in vocab:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])])
    return json.loads(tokenizer.to_str())


def write_fast_tokenizer(model_dir: Path, out: Path) -> None:
    """tokenizer.json + a tokenizer_config.json without remote code, keeping the checkpoint's chat template."""
    original = read_json(model_dir / "tokenizer_config.json")
    (out / "tokenizer.json").write_text(json.dumps(fast_tokenizer_json(model_dir), ensure_ascii=False),
                                        encoding="utf-8")
    keep = ("bos_token", "eos_token", "unk_token", "pad_token", "add_bos_token", "add_eos_token", "chat_template",
            "additional_special_tokens", "model_max_length", "clean_up_tokenization_spaces")
    config = {k: original[k] for k in keep if k in original}
    config.update(tokenizer_class="PreTrainedTokenizerFast", added_tokens_decoder=original["added_tokens_decoder"])
    (out / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
    for name in ("special_tokens_map.json", "chat_template.jinja"):
        if (model_dir / name).is_file():
            shutil.copy(model_dir / name, out / name)
