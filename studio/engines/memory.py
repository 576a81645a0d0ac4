"""The memory plan made before a model loads: weights + KV cache + headroom vs. free memory.

Estimated from the checkpoint's own files (safetensors headers, config.json), so a model that
cannot fit is refused with a fix before minutes of loading end in an out-of-memory crash.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from studio.errors import StudioError

GIB = 1024**3
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_GGUF_EXPANSION = 3.6  # a 4-5 bit GGUF grows ~3.6x once dequantised to 16-bit weights
_VISION_HEADROOM = 1 * GIB  # image tiles through the vision tower (12 tiles of InternViT ≈ 0.6 GiB)


@dataclass(frozen=True)
class MemoryPlan:
    """What a load needs and what is free, in bytes, per device kind."""

    device: str  # "cpu" or "cuda:0-1"
    weights: int
    kv_cache: int
    headroom: int
    free: int
    gpus: int = 1  # a split over several GPUs (layers spread evenly; free is their sum)

    @property
    def need(self) -> int:
        """Everything the load and one full-context generation need."""
        return self.weights + self.kv_cache + self.headroom

    @property
    def fits(self) -> bool:
        """True when the need is within the free memory."""
        return self.need <= self.free

    def summary(self) -> str:
        """One line for the loading status."""
        split = f", ≈{self.need / self.gpus / GIB:.1f} GiB on each of {self.gpus} GPUs" if self.gpus > 1 else ""
        return (f"needs ≈{self.need / GIB:.1f} GiB (weights {self.weights / GIB:.1f} + KV cache "
                f"{self.kv_cache / GIB:.1f} + headroom {self.headroom / GIB:.1f}{split}); "
                f"{self.free / GIB:.1f} GiB free on {self.device}")


def _safetensors_params(path: Path) -> int:
    """Parameter count of a safetensors file from its JSON header (no tensor is read)."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    total = 0
    for name, meta in header.items():
        if name != "__metadata__":
            n = 1
            for dim in meta["shape"]:
                n *= int(dim)
            total += n
    return total


def weight_bytes(model_dir: Path, gguf: Optional[Path], dtype: str) -> int:
    """Bytes the weights take in memory once loaded in `dtype`."""
    per = _DTYPE_BYTES.get(dtype, 2)
    if gguf is not None:
        return int(gguf.stat().st_size * _GGUF_EXPANSION * per / 2)
    shards = sorted(Path(model_dir).glob("*.safetensors"))
    if shards:
        return sum(_safetensors_params(p) for p in shards) * per
    # .bin shards hold fp16/bf16 (the official uploads) or fp32: assume 16-bit, the smaller estimate.
    return sum(p.stat().st_size for p in Path(model_dir).glob("pytorch_model*.bin")) * per // 2


def _text_config(config: dict) -> dict:
    """The language model's config: `llm_config` for InternVL2/2.5/3 (InternLM2 or Qwen2, with their
    own num_key_value_heads), `text_config` for configs that nest it so, else the config itself."""
    for key in ("llm_config", "text_config"):
        if isinstance(config.get(key), dict):
            return config[key]
    return config


def kv_bytes(config: dict, tokens: int, dtype: str) -> int:
    """KV cache for `tokens` positions: layers × 2 × kv_heads × head_dim × tokens × bytes."""
    cfg = _text_config(config)
    heads = int(cfg.get("num_attention_heads") or 0)
    if not heads or not cfg.get("num_hidden_layers") or not cfg.get("hidden_size"):
        return 0
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or cfg["hidden_size"] // heads)
    return int(cfg["num_hidden_layers"]) * 2 * kv_heads * head_dim * tokens * _DTYPE_BYTES.get(dtype, 2)


def free_bytes(device: str, num_gpus: int = 1) -> int:
    """Free memory: the sum over the first `num_gpus` GPUs, or available RAM for the CPU."""
    if device == "cuda":
        import torch

        return sum(torch.cuda.mem_get_info(i)[0] for i in range(min(num_gpus, torch.cuda.device_count())))
    import psutil

    return int(psutil.virtual_memory().available)


def make_plan(model_dir: Path, gguf: Optional[Path], dtype: str, device: str, num_gpus: int,
              context_tokens: int, vision: bool, free: Optional[int] = None) -> MemoryPlan:
    """The plan for loading one model and running one full-context generation."""
    config = {}
    if gguf is None and (Path(model_dir) / "config.json").is_file():
        try:
            config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}  # the loader reports a broken config.json with its own message
    weights = weight_bytes(model_dir, gguf, dtype)
    headroom = weights // 10 + 256 * 1024**2 + (_VISION_HEADROOM if vision else 0)
    label = "cpu" if device != "cuda" else (f"cuda:0-{num_gpus - 1}" if num_gpus > 1 else "cuda:0")
    return MemoryPlan(label, weights, kv_bytes(config, context_tokens, dtype), headroom,
                      free_bytes(device, num_gpus) if free is None else free, num_gpus if device == "cuda" else 1)


def refuse_if_too_big(plan: MemoryPlan, dtype: str, context_tokens: int) -> None:
    """StudioError with the fixes when the plan does not fit."""
    if plan.fits:
        return
    fixes = []
    if dtype == "float32":
        fixes.append("dtype: bfloat16 (half the weight memory)")
    if plan.kv_cache > plan.weights // 4:
        fixes.append(f"a shorter context_window (now {context_tokens:,} tokens)")
    if plan.device.startswith("cuda"):
        fixes.append("more GPUs (--num-gpus N) or a GPU with more free memory")
    fixes.append("a smaller model, or close what else uses the memory")
    raise StudioError(f"The model will not fit: it {plan.summary()}.", "Try " + "; or ".join(fixes) + ".")
