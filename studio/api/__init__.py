"""OpenAI-compatible API served on the studio's own server and port, under /v1."""

from __future__ import annotations

from typing import Callable

from starlette.routing import BaseRoute, Mount

from studio.api.auth import LaunchInfo
from studio.services import Services


def api_routes(services: Services, launch: Callable[[], LaunchInfo]) -> list[BaseRoute]:
    """The /v1 mount for the server's route list (none when api.enabled is false).

    Given to the server when it is created, so these routes come before the UI's own."""
    if not services.config.api.enabled:
        return []
    from studio.api.openai_routes import build_api

    return [Mount("/v1", app=build_api(services, launch))]
