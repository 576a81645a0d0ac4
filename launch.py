"""Start Puyu Studio: `python launch.py --port 6006 --num-gpus 1` (see --help); models: `python launch.py models --help`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_DATA_DIR = Path(os.environ.get("PUYU_DATA_DIR", Path.home() / ".puyu-studio"))


def parse_args(argv=None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="launch.py", description="Puyu Studio (浦语 Studio): a local studio for InternLM models.")
    p.add_argument("--port", type=int, default=6006, help="port to serve on (default 6006)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.add_argument("--num-gpus", type=int, default=1, help="GPUs a model may span (transformers: device_map; lmdeploy: tp)")
    p.add_argument("--config", default=None, help="YAML config (default configs/default.yaml: the embedded SmolLM2)")
    p.add_argument("--model-path", default=None, help="override the chat model's path (a folder or a .gguf file)")
    p.add_argument("--share", action="store_true", help="also serve a public gradio.live link (always behind a login)")
    p.add_argument("--auth", default=None, metavar="USER:PASS", help="require this login")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help=f"where conversations and caches live (default {DEFAULT_DATA_DIR})")
    p.add_argument("--lang", choices=["en", "zh"], default=None, help="UI language (default: the browser's)")
    p.add_argument("--cli", action="store_true", help="chat in the terminal instead of the browser")
    p.add_argument("--user", default=None, metavar="NAME",
                   help="with --cli: store the chats as this --auth login's (default: the local user, as the web without --auth)")
    return p.parse_args(argv)


_SHARED_FLAGS = ("--data-dir", "--config")  # the flags `models` commands take too


def _models_at(argv: list[str]):
    """Where the `models` command stands, when only --data-dir / --config come before it; else None."""
    i = 0
    while i < len(argv):
        if argv[i] == "models":
            return i
        if argv[i] in _SHARED_FLAGS:
            i += 2
        elif argv[i].split("=", 1)[0] in _SHARED_FLAGS and "=" in argv[i]:
            i += 1
        else:
            return None
    return None


def main(argv=None) -> int:
    """Parse flags, validate the config, then serve the UI or run the terminal chat (or a `models` command)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    at = _models_at(argv)
    if at is not None:  # `python launch.py models download REPO …`; every other command line is as before
        from studio.models_cli import main as models_main

        # `--data-dir D models list` works as `models list --data-dir D` does.
        return models_main(argv[at + 1:] + argv[:at], DEFAULT_DATA_DIR)
    args = parse_args(argv)
    from studio.launcher import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
