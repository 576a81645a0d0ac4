"""Where downloads come from and with which credentials: the config's `downloads:` section, then the
environment (HF_ENDPOINT, MODELSCOPE_ENDPOINT, HF_TOKEN, MODELSCOPE_API_TOKEN), then the hubs themselves."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from studio.config import DownloadsConfig

DEFAULT_ENDPOINTS = {"huggingface": "https://huggingface.co", "modelscope": "https://www.modelscope.cn"}
_ENDPOINT_ENV = {"huggingface": "HF_ENDPOINT", "modelscope": "MODELSCOPE_ENDPOINT"}


def endpoint_for(cfg: DownloadsConfig, source: str, override: Optional[str] = None) -> str:
    """The hub address for `source`: the request's, the config's, the environment's, or the hub's own."""
    configured = cfg.hf_endpoint if source == "huggingface" else cfg.modelscope_endpoint
    value = override or configured or os.environ.get(_ENDPOINT_ENV[source]) or DEFAULT_ENDPOINTS[source]
    return value.rstrip("/")


def token_for(cfg: DownloadsConfig, source: str) -> str:
    """The access token for `source`, or "" (never logged, never shown)."""
    if source == "modelscope":
        return cfg.modelscope_token or os.environ.get("MODELSCOPE_API_TOKEN", "")
    if cfg.hf_token:
        return cfg.hf_token
    try:  # reads HF_TOKEN or the token `hf auth login` stored; makes no request
        from huggingface_hub import get_token

        return get_token() or ""
    except Exception:  # an unreadable token file must not stop a public download
        return os.environ.get("HF_TOKEN", "")


def dest_root(cfg: DownloadsConfig, data_dir: Path) -> Path:
    """The folder downloads go under by default."""
    return Path(cfg.dest_root).expanduser() if cfg.dest_root else Path(data_dir) / "models"


def default_dest(root: Path, repo: str) -> Path:
    """<root>/<owner>/<name>: the layout of the lesson's shared model folders."""
    return Path(root) / repo
