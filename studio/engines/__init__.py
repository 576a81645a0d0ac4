"""Engines: how tokens are produced. Heavy imports (torch, transformers) happen inside factories."""

from __future__ import annotations

from studio.registry import Registry

ENGINES: Registry = Registry("engine")


@ENGINES.register("hf")
def _hf(cfg, ctx):
    from studio.engines.hf import load_hf_engine

    return load_hf_engine(cfg, ctx)
