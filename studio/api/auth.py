"""Who may call the API: configured keys, the launch credentials, or (with neither) localhost only."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class LaunchInfo:
    """What the server was launched with, read when a request arrives (launch happens after building)."""

    auth: Any = None  # as Gradio keeps it: None, [(user, password), …], or a callable(user, password)
    host: Optional[str] = None
    share: bool = False


def is_loopback(host: Optional[str]) -> bool:
    """True for an address only this machine can reach."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bearer(header: Optional[str]) -> Optional[str]:
    scheme, _, token = (header or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _accepted(token: str, keys: list[str], auth: Any) -> bool:
    if callable(auth):
        user, sep, password = token.partition(":")
        return bool(sep) and bool(auth(user, password))
    secrets = list(keys)
    for user, password in auth or []:
        secrets += [password, f"{user}:{password}"]
    # Compare against every secret (no early exit), each in constant time.
    return sum(_same(token, s) for s in secrets) > 0


def refusal(keys: list[str], launch: LaunchInfo, header: Optional[str]) -> Optional[str]:
    """Why a request with this Authorization header is refused, or None when it may proceed."""
    if not keys and not launch.auth:
        if is_loopback(launch.host) and not launch.share:
            return None
        return ("This studio listens on a public address without --auth or api.keys, so its API is closed. "
                "Set api.keys in the config or launch with --auth USER:PASS.")
    token = _bearer(header)
    if token is None:
        return "Missing API key: send 'Authorization: Bearer <key>' (an api.keys entry, or the --auth password)."
    if not _accepted(token, keys, launch.auth):
        return "Incorrect API key provided."
    return None
