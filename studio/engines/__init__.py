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
def _hf_check(cfg):
    from studio.engines.hf_loading import resolve_model_files
    from studio.families.detect import resolve_family

    files = resolve_model_files(cfg.model_path, cfg.gguf_file)
    resolve_family(cfg.family, None if files.gguf else files.model_dir)


def preflight(cfg) -> None:
    """Raise StudioError now if the engine's model files are missing or unsupported."""
    if cfg.engine in CHECKS:
        CHECKS.get(cfg.engine)(cfg)
