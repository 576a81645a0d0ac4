"""Engines: how tokens are produced. Heavy imports (torch, transformers) happen inside factories."""

from __future__ import annotations

from studio.registry import Registry

ENGINES: Registry = Registry("engine")


@ENGINES.register("hf")
def _hf(cfg, ctx):
    from studio.engines.hf import load_hf_engine

    return load_hf_engine(cfg, ctx)


@ENGINES.register("openai_compat")
def _openai_compat(cfg, ctx):
    from studio.engines.openai_compat import load_openai_compat

    return load_openai_compat(cfg, ctx)


@ENGINES.register("lmdeploy")
def _lmdeploy(cfg, ctx):
    from studio.engines.lmdeploy_engine import load_lmdeploy_engine

    return load_lmdeploy_engine(cfg, ctx)


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


@CHECKS.register("openai_compat")
def _openai_compat_check(cfg, num_gpus: int = 1) -> str:
    # No network here: the server may start after the studio. Only the URL's shape and the key's source.
    from studio.config import base_url_problem
    from studio.engines.openai_compat import api_key_of
    from studio.errors import ConfigError

    problem = base_url_problem(cfg.base_url or "")
    if problem:
        raise ConfigError(f"engine openai_compat: base_url {cfg.base_url!r} {problem}.",
                          "Give the server's API root, e.g. http://host:23333/v1.")
    api_key_of(cfg)
    model = cfg.remote_model or "the server's only model"
    return f"remote: {model} at {cfg.base_url}"


@CHECKS.register("lmdeploy")
def _lmdeploy_check(cfg, num_gpus: int = 1) -> str:
    # CUDA, the lmdeploy package, tp vs. visible GPUs, TurboMind, model files and memory; lmdeploy not imported.
    from studio.engines.lmdeploy_setup import preflight as lmdeploy_preflight

    return lmdeploy_preflight(cfg, num_gpus)


def preflight(cfg, num_gpus: int = 1) -> str:
    """Raise StudioError now if the engine's model files are missing, unsupported or too big;
    otherwise a one-line memory estimate (empty for engines without a check)."""
    if cfg.engine in CHECKS:
        return CHECKS.get(cfg.engine)(cfg, num_gpus) or ""
    return ""
