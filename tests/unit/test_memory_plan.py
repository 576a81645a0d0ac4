"""The memory plan: weights from safetensors headers, KV cache from config.json, refusal with fixes."""

from __future__ import annotations

import json

import pytest

from studio.engines.memory import GIB, MemoryPlan, kv_bytes, make_plan, refuse_if_too_big, weight_bytes
from studio.errors import StudioError


def write_checkpoint(folder, shapes, config):
    from safetensors.torch import save_file
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    save_file({name: torch.zeros(shape) for name, shape in shapes.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


INTERNLM2_1_8B = {"num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 8, "hidden_size": 2048}


def test_kv_cache_of_internlm2_1_8b():
    # 24 layers × 2 × 8 kv heads × 128 dims × 4096 tokens × 2 bytes = 384 MiB
    assert kv_bytes(INTERNLM2_1_8B, 4096, "bfloat16") == 24 * 2 * 8 * 128 * 4096 * 2 == 384 * 1024**2
    # InternVL2 keeps the LM's dims under llm_config.
    assert kv_bytes({"llm_config": INTERNLM2_1_8B}, 4096, "float32") == 2 * 384 * 1024**2


def test_weights_come_from_the_safetensors_header(tmp_path):
    folder = write_checkpoint(tmp_path / "m", {"a": (10, 20), "b": (5,)}, INTERNLM2_1_8B)
    assert weight_bytes(folder, None, "bfloat16") == 205 * 2
    assert weight_bytes(folder, None, "float32") == 205 * 4


def test_plan_fits_or_refuses_with_fixes(tmp_path):
    folder = write_checkpoint(tmp_path / "m", {"a": (1000, 1000)}, INTERNLM2_1_8B)
    plan = make_plan(folder, None, "float32", "cpu", 1, 32768, vision=True, free=64 * GIB)
    assert plan.weights == 4_000_000 and plan.kv_cache == 24 * 2 * 8 * 128 * 32768 * 4
    assert plan.fits and "GiB free on cpu" in plan.summary()
    small = make_plan(folder, None, "float32", "cpu", 1, 32768, vision=True, free=1 * GIB)
    assert not small.fits
    with pytest.raises(StudioError) as err:
        refuse_if_too_big(small, "float32", 32768)
    text = str(err.value)
    assert "will not fit" in text and "dtype: bfloat16" in text and "shorter context_window (now 32,768 tokens)" in text


def test_gpu_plan_suggests_more_gpus():
    plan = MemoryPlan("cuda:0", weights=20 * GIB, kv_cache=GIB, headroom=GIB, free=10 * GIB)
    with pytest.raises(StudioError, match="--num-gpus"):
        refuse_if_too_big(plan, "bfloat16", 4096)


def test_a_split_plan_states_each_gpus_share(tmp_path):
    folder = write_checkpoint(tmp_path / "m", {"a": (4096, 4096)}, INTERNLM2_1_8B)
    split = make_plan(folder, None, "bfloat16", "cuda", 2, 4096, vision=False, free=40 * GIB)
    one = make_plan(folder, None, "bfloat16", "cuda", 1, 4096, vision=False, free=20 * GIB)
    assert split.gpus == 2 and split.device == "cuda:0-1" and one.gpus == 1
    assert f"≈{split.need / 2 / GIB:.1f} GiB on each of 2 GPUs" in split.summary()
    assert "each of" not in one.summary() and "each of" not in make_plan(
        folder, None, "bfloat16", "cpu", 2, 4096, vision=False, free=GIB).summary()
