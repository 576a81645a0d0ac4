"""Shared test set-up: offline, private temp dirs, and launched-app fixtures."""

from __future__ import annotations

import os
import tempfile

# Before anything imports huggingface_hub or gradio: never touch the network, private temp dirs.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="puyu-test-gradio-"))

import pytest  # noqa: E402

from tests.support.apps import embedded_cache_dir  # noqa: E402,F401  (session fixture)


def pytest_collection_modifyitems(config, items):
    """Skip GPU tests without CUDA, with the reason shown."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
