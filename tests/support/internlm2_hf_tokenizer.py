"""The real InternLM2 `tokenizer.model` as a transformers fast tokenizer (tokenizer.json), no remote code.

Used where a library needs an HF tokenizer folder (lmdeploy, benchmarks on the GPU machine): the
studio's own converter (studio/engines/lmdeploy_tokenizer.py) with the official tokenizer_config.json,
so the chat/agent special tokens sit at their official ids (92538–92543).
"""

from __future__ import annotations

from pathlib import Path

from tests.support.tiny_checkpoints import write_tiny_tokenizer


def write_internlm2_hf_tokenizer(spm: Path, folder: Path) -> Path:
    """tokenizer.json + tokenizer_config.json for `spm` in `folder` (as the studio writes them for lmdeploy)."""
    import shutil
    import tempfile

    from studio.engines.lmdeploy_tokenizer import write_fast_tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        write_tiny_tokenizer(Path(tmp))  # the official tokenizer_config.json (special tokens, chat template)
        shutil.copy(spm, Path(tmp) / "tokenizer.model")
        write_fast_tokenizer(Path(tmp), folder)
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
