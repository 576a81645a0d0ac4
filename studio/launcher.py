"""What launch.py does: environment, config, port and auth checks, then the UI or the CLI."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Optional

from studio.errors import StudioError

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def prepare_environment(data_dir: Path) -> None:
    """Offline by default, a private data dir and a private Gradio temp dir per user (machines are shared)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from studio.store.private_files import private_dir

    if not data_dir.exists():
        data_dir.mkdir(mode=0o700, parents=True)  # conversations are private: a new data dir is the user's alone
    elif data_dir.stat().st_mode & 0o077:
        print(f"warning: {data_dir} can be read by other users (mode {data_dir.stat().st_mode & 0o777:o}); "
              f"run `chmod 700 {data_dir}` to keep conversations private.", file=sys.stderr)
    # Made or checked without following links: a planted folder or link is refused, never used.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(private_dir(data_dir, "tmp", "gradio")))


def check_port(host: str, port: int) -> None:
    """Fail early, naming the port, when it cannot be bound."""
    if not 1 <= port <= 65535:
        raise StudioError(f"--port {port} is not a valid port.", "Use a number between 1024 and 65535, e.g. --port 6006.")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        # Bind as the server will (uvicorn and Gradio set SO_REUSEADDR): a TIME-WAIT socket left by a
        # crashed studio must not look busy, while a live listener still refuses the bind.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StudioError(
                    f"Port {port} on {host} is already in use (another studio or program is listening).",
                    f"Stop it (find it with `lsof -i :{port}` or `ss -ltnp | grep {port}`), or start on another port: "
                    f"python launch.py --port {port + 1}",
                ) from None
            raise StudioError(f"Cannot listen on {host}:{port}: {exc.strerror}.", "Check --host and --port.") from None


def parse_auth(value: Optional[str], share: bool) -> tuple[Optional[tuple[str, str]], bool]:
    """(user, password) from --auth; with --share and no --auth, generated ones (never an open link)."""
    if value:
        user, sep, password = value.partition(":")
        if not sep or not user or not password:
            raise StudioError(f"--auth {value!r} is not USER:PASS.", "Example: --auth alice:s3cret")
        return (user, password), False
    if share:
        return ("puyu", secrets.token_urlsafe(12)), True
    return None, False


def tunnel_hint(host: str, port: int) -> str:
    """The SSH command a remote user runs to reach this port through a tunnel."""
    target = "127.0.0.1" if host in ("127.0.0.1", "localhost", "0.0.0.0", "::") else host
    return f"ssh -CNg -L {port}:{target}:{port} <user>@<this-server> -p <ssh-port>"


def _fail(exc: StudioError, code: int) -> int:
    print(f"error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"  → {exc.hint}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    """Everything launch.py does after parsing flags; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "urllib3"):  # Gradio's own start-up probes
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from studio.config import load_config
    from studio.errors import ConfigError

    try:
        config = load_config(args.config, model_path=args.model_path)
    except ConfigError as exc:
        return _fail(exc, EXIT_CONFIG)
    if args.num_gpus < 1:
        return _fail(StudioError(f"--num-gpus {args.num_gpus} must be at least 1."), EXIT_CONFIG)
    data_dir = Path(args.data_dir).expanduser().resolve()
    try:
        from studio.engines import preflight

        for name, eng in config.engines.items():
            estimate = preflight(eng, args.num_gpus)
            if estimate:
                print(f"Model {name}: {estimate}", flush=True)
    except StudioError as exc:
        return _fail(exc, EXIT_CONFIG)
    try:
        auth, generated = parse_auth(args.auth, args.share)
        prepare_environment(data_dir)
        from studio.services import build_services

        cache = os.environ.get("PUYU_CACHE_DIR")  # lets several data dirs share converted models
        services = build_services(config, data_dir, args.num_gpus, cache_dir=Path(cache) if cache else None)
        if args.cli:
            from studio.cli import run_cli

            return run_cli(services)
        check_port(args.host, args.port)
    except OSError as exc:
        return _fail(StudioError(f"Cannot use the data directory {data_dir}: {exc}", "Pass a writable --data-dir."), EXIT_RUNTIME)
    except StudioError as exc:
        return _fail(exc, EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_RUNTIME)
    return _serve(args, services, auth, generated)


def _serve(args, services, auth, generated: bool) -> int:
    from studio.ui.app import build_app

    services.engines.start()  # the page is served while the model loads
    app = build_app(services, lang=args.lang)
    try:
        app.blocks.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                          prevent_thread_lock=True, quiet=True, **app.launch_kwargs)
    except OSError as exc:
        services.close()
        return _fail(StudioError(f"Could not start the server on {args.host}:{args.port}: {exc}",
                                 f"Try another port: python launch.py --port {args.port + 1}"), EXIT_RUNTIME)
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    print(f"\n  Puyu Studio is running at {url}")
    print(f"  From your own computer, open an SSH tunnel first:\n    {tunnel_hint(args.host, args.port)}")
    print(f"  then browse to http://127.0.0.1:{args.port}")
    if auth:
        print(f"  Login: {auth[0]} / {auth[1]}" + ("  (generated for --share)" if generated else ""))
    if args.share:
        if app.blocks.share_url:
            print(f"  Public link (login required): {app.blocks.share_url}")
        else:
            print("  The public share link could not be created (is this machine offline?). "
                  "The studio keeps serving locally; use the SSH tunnel above.")
    print("  Press Ctrl+C to stop.\n", flush=True)
    try:
        app.blocks.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        services.close()
    return 0
