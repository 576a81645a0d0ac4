"""Engines: how tokens are produced. Heavy imports (torch, transformers) happen inside factories.

Each engine kind is registered with its options class (what its YAML block may say), its factory, and a
cheap check run before the UI is built, so a wrong model path fails in the terminal at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from studio.engines.hf_loading import HFOptions
from studio.engines.lmdeploy_setup import LmdeployOptions
from studio.engines.openai_compat import RemoteOptions
from studio.engines.options import EngineOptions
from studio.registry import Registry


@dataclass(frozen=True)
class EngineKind:
    """One kind of engine: its config options, how to load it, and how to check it without loading."""

    options: type[EngineOptions]
    load: Callable  # (options, LoadContext) -> Engine
    check: Optional[Callable[[EngineOptions, int], str]] = None  # (options, num_gpus) -> one-line summary


ENGINES: Registry[EngineKind] = Registry("engine")


def _load_hf(cfg, ctx):
    from studio.engines.hf import load_hf_engine

    return load_hf_engine(cfg, ctx)


def _check_hf(cfg, num_gpus: int = 1) -> str:
    import torch

    from studio.engines.base import Placement
    from studio.engines.hf_loading import context_tokens, pick_device, pick_dtype, resolve_model_files
    from studio.engines.memory import make_plan, refuse_if_too_big
    from studio.families.detect import resolve_family

    files = resolve_model_files(cfg.model_path, cfg.gguf_file)
    family = resolve_family(cfg.family, None if files.gguf else files.model_dir)
    device = pick_device(cfg.device, Placement(cfg.device, num_gpus), torch.cuda.is_available())
    dtype, tokens = pick_dtype(cfg.dtype, device), context_tokens(cfg, files)
    plan = make_plan(files.model_dir, files.gguf, dtype, device, num_gpus if device == "cuda" else 1, tokens,
                     vision=bool(getattr(family, "accepts_images", False)))
    refuse_if_too_big(plan, dtype, tokens)
    return f"{family.name}, {dtype}: {plan.summary()}"


def _load_remote(cfg, ctx):
    from studio.engines.openai_compat import load_openai_compat

    return load_openai_compat(cfg, ctx)


def _check_remote(cfg, num_gpus: int = 1) -> str:
    # No network here: the server may start after the studio. Only the key's source (the URL was checked
    # with the config).
    from studio.engines.openai_compat import api_key_of

    api_key_of(cfg)
    model = cfg.remote_model or "the server's only model"
    return f"remote: {model} at {cfg.base_url}"


def _load_lmdeploy(cfg, ctx):
    from studio.engines.lmdeploy_engine import load_lmdeploy_engine

    return load_lmdeploy_engine(cfg, ctx)


def _check_lmdeploy(cfg, num_gpus: int = 1) -> str:
    # CUDA, the lmdeploy package, tp vs. visible GPUs, TurboMind, model files and memory; lmdeploy not imported.
    from studio.engines.lmdeploy_setup import preflight as lmdeploy_preflight

    return lmdeploy_preflight(cfg, num_gpus)


ENGINES.register("hf")(EngineKind(HFOptions, _load_hf, _check_hf))
ENGINES.register("openai_compat")(EngineKind(RemoteOptions, _load_remote, _check_remote))
ENGINES.register("lmdeploy")(EngineKind(LmdeployOptions, _load_lmdeploy, _check_lmdeploy))


def preflight(cfg: EngineOptions, num_gpus: int = 1) -> str:
    """Raise StudioError now if the engine's model files are missing, unsupported or too big;
    otherwise a one-line memory estimate (empty for engines without a check)."""
    check = ENGINES.get(cfg.engine).check
    return (check(cfg, num_gpus) or "") if check else ""
