"""Before the lmdeploy engine loads: can this machine run it, how much memory, which backend config.

Nothing here imports lmdeploy unless TurboMind is asked about or a config is built.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from studio.config import EngineConfig
from studio.engines.memory import GIB, MemoryPlan
from studio.errors import ConfigError

DEFAULT_SESSION = 8192
INSTALL_HINT = "Install it with `pip install -r requirements-lmdeploy.txt` (a CUDA machine), or use engine: hf."


def installed() -> bool:
    """True when the lmdeploy package can be imported."""
    try:
        return importlib.util.find_spec("lmdeploy") is not None
    except ValueError:  # already imported without a spec
        return "lmdeploy" in sys.modules


def cuda_devices() -> int:
    """How many CUDA devices torch sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def turbomind_available() -> bool:
    """True when lmdeploy's TurboMind extension imports (0.18 says so through is_available())."""
    try:
        from lmdeploy import turbomind
    except Exception:  # a missing _turbomind extension raises ImportError or RuntimeError
        return False
    check = getattr(turbomind, "is_available", None)
    return bool(check()) if callable(check) else True


def check_environment(cfg: EngineConfig, num_gpus: int) -> None:
    """ConfigError with the fix when this machine cannot run lmdeploy as configured."""
    gpus = cuda_devices()
    if gpus == 0:
        raise ConfigError("The lmdeploy engine needs an NVIDIA GPU, and no CUDA device is visible.",
                          "Use engine: hf on CPU (e.g. --config configs/internlm2-chat-1_8b.yaml).")
    if not installed():
        raise ConfigError("engine: lmdeploy is selected but the lmdeploy package is not installed.", INSTALL_HINT)
    if num_gpus > gpus:
        raise ConfigError(f"--num-gpus {num_gpus} asks lmdeploy for tensor parallelism over {num_gpus} GPUs, "
                          f"but only {gpus} {'is' if gpus == 1 else 'are'} visible.",
                          f"Pass --num-gpus {gpus} or fewer (or check CUDA_VISIBLE_DEVICES).")
    if cfg.backend == "turbomind" and not turbomind_available():
        raise ConfigError("backend: turbomind was asked for, but lmdeploy's TurboMind extension does not import.",
                          "Use backend: pytorch (or auto), or install an lmdeploy wheel built with TurboMind.")


def session_len_of(cfg: EngineConfig) -> int:
    """Tokens one conversation may hold: session_len, else context_window, else 8192."""
    return cfg.session_len or cfg.context_window or DEFAULT_SESSION


def cache_fraction(plan: MemoryPlan, max_batch_size: int) -> float:
    """lmdeploy's cache_max_entry_count: the share of memory free after the weights that the KV cache
    may take — enough for max_batch_size full sessions, never the activation headroom."""
    after_weights = plan.free - plan.weights
    if after_weights <= 0:
        return 0.05
    wanted = plan.kv_cache * max_batch_size
    allowed = max(after_weights - plan.headroom, 0)
    return round(min(0.9, max(0.05, min(wanted, allowed) / after_weights)), 3)


def plan_load(cfg: EngineConfig, num_gpus: int) -> tuple[Any, Any, MemoryPlan]:
    """(model files, family, memory plan); StudioError for a missing model, an unsupported family, or no room."""
    from studio.engines.hf_loading import resolve_model_files
    from studio.engines.memory import make_plan, refuse_if_too_big
    from studio.families.detect import resolve_family

    files = resolve_model_files(cfg.model_path, None)
    family = resolve_family(cfg.family, files.model_dir)
    if family.name == "xcomposer2":
        raise ConfigError(f"{files.model_dir} is an XComposer2 checkpoint, which lmdeploy 0.15 and later "
                          "do not support.", "Use engine: hf for this model.")
    dtype = "bfloat16" if cfg.dtype == "auto" else cfg.dtype
    tokens = session_len_of(cfg)
    plan = make_plan(files.model_dir, None, dtype, "cuda", num_gpus, tokens,
                     vision=bool(getattr(family, "accepts_images", False)))
    refuse_if_too_big(plan, dtype, tokens)
    return files, family, plan


def preflight(cfg: EngineConfig, num_gpus: int = 1) -> str:
    """Check the machine, the model files and the memory plan without loading; a one-line summary."""
    check_environment(cfg, num_gpus)
    _, family, plan = plan_load(cfg, num_gpus)
    share = cfg.cache_max_entry_count or cache_fraction(plan, cfg.max_batch_size)
    pool = share * max(plan.free - plan.weights, 0) / GIB
    return (f"{family.name}, lmdeploy tp={num_gpus}, KV cache {share:.0%} of free memory (≈{pool:.1f} GiB, "
            f"{cfg.max_batch_size} sessions of {session_len_of(cfg)} tokens): {plan.summary()}")


def backend_config(cfg: EngineConfig, tp: int, share: float) -> tuple[str, Any]:
    """(backend name, lmdeploy engine config) for the configured backend."""
    import lmdeploy

    backend = cfg.backend if cfg.backend != "auto" else ("turbomind" if turbomind_available() else "pytorch")
    kind = lmdeploy.TurbomindEngineConfig if backend == "turbomind" else lmdeploy.PytorchEngineConfig
    dtype = "auto" if cfg.dtype == "auto" else cfg.dtype
    extra = {"enable_mp_engine": cfg.engine_process} if backend == "pytorch" else {}
    return backend, kind(tp=tp, session_len=session_len_of(cfg), max_batch_size=cfg.max_batch_size,
                         cache_max_entry_count=share, enable_prefix_caching=cfg.enable_prefix_caching, dtype=dtype,
                         **extra)
