"""Shared test set-up: offline, private temp dirs, and launched-app fixtures."""

from __future__ import annotations

import os
import tempfile

# Before anything imports huggingface_hub or gradio: never touch the network, private temp dirs.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="puyu-test-gradio-"))
if "PYTEST_XDIST_WORKER" in os.environ:
    # Each worker its own Gradio cache: workers inherit the first process's folder, and one app's
    # cleanup there removed files (the buttons' icons) another worker's page was still serving.
    os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix=f"puyu-test-gradio-{os.environ['PYTEST_XDIST_WORKER']}-")

import pytest  # noqa: E402

from tests.support.apps import embedded_cache_dir  # noqa: E402,F401  (session fixture)
from tests.support.scripted import scripted_registered  # noqa: E402


@pytest.fixture
def scripted_engine():
    """The scripted test engine registered as "scripted" in ENGINES for one test, removed afterwards."""
    with scripted_registered():
        yield


# What makes a test slow: a fixture that loads the embedded SmolLM2, or a module whose tests all run
# a real model (the embedded one or tiny official-layout checkpoints) end to end.
REAL_MODEL_FIXTURES = {"embedded_cache_dir"}
REAL_MODEL_MODULES = {"test_hf_engine", "test_chat_real", "test_article_real", "test_vision_real",
                      "test_internlm2_real", "test_system_panel"}


def pytest_collection_modifyitems(config, items):
    """Mark real-model and browser tests slow; skip GPU tests without CUDA, with the reason shown."""
    for item in items:
        module = getattr(item, "module", None)
        if ("browser" in item.keywords or REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ()))
                or (module is not None and module.__name__.rsplit(".", 1)[-1] in REAL_MODEL_MODULES)):
            item.add_marker(pytest.mark.slow)
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
