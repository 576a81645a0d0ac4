"""Before the lmdeploy engine loads: can this machine run it, how much memory, which backend config.

Nothing here imports lmdeploy unless TurboMind is asked about or a config is built.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from studio.engines.memory import GIB, MemoryPlan
from studio.engines.options import LocalOptions
from studio.errors import ConfigError

DEFAULT_SESSION = 8192


class LmdeployOptions(LocalOptions):
    """engine: lmdeploy — continuous batching on NVIDIA GPUs (pip install -r requirements-lmdeploy.txt)."""

    engine: Literal["lmdeploy"] = "lmdeploy"
    backend: Literal["auto", "turbomind", "pytorch"] = "auto"  # auto: TurboMind when importable
    session_len: Optional[int] = Field(None, ge=256, le=1_048_576)  # None: context_window, else 8192
    max_batch_size: int = Field(32, ge=1, le=1024)  # also how many browser users stream at once
    cache_max_entry_count: Optional[float] = Field(None, gt=0, lt=1)  # None: from the memory plan
    enable_prefix_caching: bool = True
    # PyTorch backend: run the engine in its own process (as lmdeploy's api_server does), so that the web
    # server's Python work and the engine's scheduling don't share one interpreter lock.
    engine_process: bool = True
    refused: ClassVar[dict[str, str]] = {"gguf_file": "GGUF files load with engine: hf only"}

    def concurrency(self) -> int:
        """lmdeploy batches: max_batch_size requests at once."""
        return self.max_batch_size

    @field_validator("family", "device", "dtype")
    @classmethod
    def _lmdeploy_can_run(cls, value, info: ValidationInfo):
        # What lmdeploy cannot do is refused here, before anything loads; the hint names the way out.
        if info.field_name == "family" and value == "xcomposer2":
            raise PydanticCustomError(
                "lmdeploy", "XComposer2 is not supported by lmdeploy (lmdeploy 0.15 and later removed it); "
                "use engine: hf for this model")
        if info.field_name == "device" and value == "cpu":
            raise PydanticCustomError("lmdeploy", "the lmdeploy engine needs an NVIDIA GPU; use engine: hf on CPU")
        if info.field_name == "dtype" and value == "float32":
            raise PydanticCustomError("lmdeploy", "lmdeploy runs float16 or bfloat16; use auto, bfloat16 or float16")
        return value
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


def check_environment(cfg: LmdeployOptions, num_gpus: int) -> None:
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


def session_len_of(cfg: LmdeployOptions) -> int:
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


def plan_load(cfg: LmdeployOptions, num_gpus: int) -> tuple[Any, Any, MemoryPlan]:
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


def preflight(cfg: LmdeployOptions, num_gpus: int = 1) -> str:
    """Check the machine, the model files and the memory plan without loading; a one-line summary."""
    check_environment(cfg, num_gpus)
    _, family, plan = plan_load(cfg, num_gpus)
    share = cfg.cache_max_entry_count or cache_fraction(plan, cfg.max_batch_size)
    pool = share * max(plan.free - plan.weights, 0) / GIB
    return (f"{family.name}, lmdeploy tp={num_gpus}, KV cache {share:.0%} of free memory (≈{pool:.1f} GiB, "
            f"{cfg.max_batch_size} sessions of {session_len_of(cfg)} tokens): {plan.summary()}")


def backend_config(cfg: LmdeployOptions, tp: int, share: float) -> tuple[str, Any]:
    """(backend name, lmdeploy engine config) for the configured backend."""
    import lmdeploy

    backend = cfg.backend if cfg.backend != "auto" else ("turbomind" if turbomind_available() else "pytorch")
    kind = lmdeploy.TurbomindEngineConfig if backend == "turbomind" else lmdeploy.PytorchEngineConfig
    dtype = "auto" if cfg.dtype == "auto" else cfg.dtype
    extra = {"enable_mp_engine": cfg.engine_process} if backend == "pytorch" else {}
    return backend, kind(tp=tp, session_len=session_len_of(cfg), max_batch_size=cfg.max_batch_size,
                         cache_max_entry_count=share, enable_prefix_caching=cfg.enable_prefix_caching, dtype=dtype,
                         **extra)
