"""Which engine each tab talks to is decided once, in build_app: its listeners queue on that engine."""

from __future__ import annotations

import textwrap

import pytest

from studio.config import load_config
from studio.services import build_services
from studio.ui.app import build_app

pytestmark = pytest.mark.usefixtures("scripted_engine")


def _queues(tmp_path, engines: str) -> dict[str, str]:
    cfg = tmp_path / "engines.yaml"
    cfg.write_text("engines:\n" + textwrap.indent(textwrap.dedent(engines), "  "), encoding="utf-8")
    services = build_services(load_config(cfg), tmp_path / "data")
    try:
        demo = build_app(services).blocks
        return {fn.api_name: fn.concurrency_id for fn in demo.fns.values() if fn.api_name}
    finally:
        services.close()


CHAT = """\
chat:
  engine: scripted
  model_path: "script:echo"
"""
VISION = """\
vision:
  engine: scripted
  model_path: "script:vision"
"""


@pytest.mark.parametrize("engines, image_engine", [(CHAT, "chat"), (CHAT + VISION, "vision")])
def test_each_tab_queues_on_its_engine(tmp_path, engines, image_engine):
    queues = _queues(tmp_path, engines)
    for api in ("chat", "regenerate", "article_write", "article_rewrite", "article_insert_after"):
        assert queues[api] == "engine:chat", api
    for api in ("vision_ask", "vision_describe", "vision_ocr", "vision_regenerate", "vision_extract"):
        assert queues[api] == f"engine:{image_engine}", api
