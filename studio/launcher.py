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
from typing import Optional, TextIO

from studio.console import Console, open_log, quiet_libraries, report_loading, route_output
from studio.errors import StudioError
from studio.store.private_files import private_dir
from studio.tasks.users import login_user

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def prepare_environment(data_dir: Path) -> None:
    """Offline by default, a private data dir and a private Gradio temp dir per user (machines are shared)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # Gradio's queue rebuilds a pandas summary of its last 10 000 events after every event by default; with
    # it refreshed every 1 000 events, a short chat reply plus a New-conversation click cost the server 26 ms
    # of CPU instead of 36 (docs/BENCHMARKS.md, the chat UI path), and the cost no longer grows with uptime.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")

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


def _fail(exc: StudioError, code: int, err: Optional[TextIO] = None) -> int:
    err = err or sys.stderr
    print(f"error: {exc.message}", file=err)
    if exc.hint:
        print(f"  → {exc.hint}", file=err)
    err.flush()
    return code


def run(args: argparse.Namespace) -> int:
    """Everything launch.py does after parsing flags; returns the exit status."""
    quiet_libraries()  # before anything imports huggingface_hub or transformers
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
        cli_user = login_user(args.user) if args.user is not None else None
        services = build_services(config, data_dir, args.num_gpus, cache_dir=Path(cache) if cache else None)
        if not args.cli:
            check_port(args.host, args.port)
        console = Console(sys.stdout)
        log_file = open_log(private_dir(data_dir, "logs"))
        route_output(console, log_file)
    except OSError as exc:
        return _fail(StudioError(f"Cannot use the data directory {data_dir}: {exc}", "Pass a writable --data-dir."), EXIT_RUNTIME)
    except StudioError as exc:
        return _fail(exc, EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_RUNTIME)
    if args.cli:
        from studio.cli import run_cli

        try:
            return run_cli(services, user_id=cli_user)
        finally:
            services.close()
    return _serve(args, services, auth, generated, console, log_file)


def _serve(args, services, auth, generated: bool, console: Console, log_file: Path) -> int:
    from studio.ui.app import build_app

    services.engines.start()  # the page is served while the model loads
    if services.downloads is not None:
        services.downloads.resume_unfinished()  # downloads cut off by a stop or a crash go on from their bytes
    app = build_app(services, lang=args.lang)
    try:
        app.blocks.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                          prevent_thread_lock=True, quiet=True, **app.launch_kwargs)
    except OSError as exc:
        services.close()
        return _fail(StudioError(f"Could not start the server on {args.host}:{args.port}: {exc}",
                                 f"Try another port: python launch.py --port {args.port + 1}"), EXIT_RUNTIME, console.err)
    for line in _banner(args, auth, generated, app.blocks.share_url, log_file):
        console.line(line)
    report_loading(services.engines, console)
    try:
        app.blocks.block_thread()
    except KeyboardInterrupt:
        console.clear_status()
    finally:
        services.close()
    return 0


def _banner(args, auth, generated: bool, share_url: Optional[str], log_file: Path) -> list[str]:
    """The lines printed once the server is up: where it runs, how to reach it, the login, the log."""
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    lines = ["", f"  Puyu Studio is running at {url}", "  From your own computer, open an SSH tunnel first:",
             f"    {tunnel_hint(args.host, args.port)}", f"  then browse to http://127.0.0.1:{args.port}"]
    if auth:
        lines.append(f"  Login: {auth[0]} / {auth[1]}" + ("  (generated for --share)" if generated else ""))
    if args.share:
        lines.append(f"  Public link (login required): {share_url}" if share_url else
                     "  The public share link could not be created (is this machine offline?). "
                     "The studio keeps serving locally; use the SSH tunnel above.")
    return [*lines, f"  Library messages and warnings go to {log_file}", "  Press Ctrl+C to stop.", ""]
