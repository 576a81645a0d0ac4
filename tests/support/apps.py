"""Launch the real app in-process on a free port, as launch.py does, for e2e and browser tests."""

from __future__ import annotations

import contextlib
import socket
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

from studio.config import StudioConfig, load_config
from studio.services import Services, build_services
from tests.support.scripted import scripted_registered

REPO = Path(__file__).resolve().parents[2]
EMBEDDED_CONFIG = REPO / "configs" / "default.yaml"


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path, engine: str = "scripted", model_path: str = "script:echo", extra: str = "") -> Path:
    """A small config file for tests (default: the scripted echo engine)."""
    path = folder / f"{engine}-{model_path.replace(':', '_').replace('/', '_')}.yaml"
    path.write_text(textwrap.dedent(f"""\
        ui:
          queue_max_size: 8
        engines:
          chat:
            engine: {engine}
            family: auto
            model_path: {model_path}
        """) + extra, encoding="utf-8")
    return path


@dataclass
class Running:
    """A launched app."""

    url: str
    services: Services
    blocks: object


@contextlib.contextmanager
def running_app(config: Path | StudioConfig, data_dir: Path, cache_dir: Optional[Path] = None,
                auth=None, wait_ready: bool = True) -> Iterator[Running]:
    """Build Services + app exactly as launch.py does and serve it until the block ends (the scripted
    test engine registered meanwhile)."""
    with scripted_registered(), _serve(config, data_dir, cache_dir, auth, wait_ready) as running:
        yield running


@contextlib.contextmanager
def _serve(config, data_dir, cache_dir, auth, wait_ready) -> Iterator[Running]:
    from studio.ui.app import build_app

    cfg = config if isinstance(config, StudioConfig) else load_config(config)
    services = build_services(cfg, data_dir, cache_dir=cache_dir)
    services.engines.start()
    app = build_app(services)
    port = free_port()
    app.blocks.launch(server_port=port, prevent_thread_lock=True, quiet=True, auth=auth, **app.launch_kwargs)
    try:
        if wait_ready:
            st = services.engines.wait("chat", 300)
            assert st.state == "ready", st
        yield Running(f"http://127.0.0.1:{port}/", services, app.blocks)
    finally:
        app.blocks.close()
        services.close()
        time.sleep(0.2)


@pytest.fixture(scope="session")
def embedded_cache_dir(tmp_path_factory) -> Path:
    """One model cache for the whole run, so the GGUF is dequantised once."""
    return tmp_path_factory.mktemp("model-cache")
