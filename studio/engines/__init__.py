"""Engines: how tokens are produced. Heavy imports (torch, transformers) happen inside factories."""

from __future__ import annotations

from studio.registry import Registry

ENGINES: Registry = Registry("engine")


@ENGINES.register("hf")
def _hf(cfg, ctx):
    from studio.engines.hf import load_hf_engine

    return load_hf_engine(cfg, ctx)


# Cheap checks run before the UI is built, so a wrong model path fails in the terminal at once.
CHECKS: Registry = Registry("engine check")


@CHECKS.register("hf")
def _hf_check(cfg, num_gpus: int = 1) -> str:
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


def preflight(cfg, num_gpus: int = 1) -> str:
    """Raise StudioError now if the engine's model files are missing, unsupported or too big;
    otherwise a one-line memory estimate (empty for engines without a check)."""
    if cfg.engine in CHECKS:
        return CHECKS.get(cfg.engine)(cfg, num_gpus) or ""
    return ""
