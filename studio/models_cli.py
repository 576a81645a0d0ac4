"""`python launch.py models …`: download a model (resumable; Ctrl-C keeps the partial) and list downloads."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, TextIO

from studio.console import Console
from studio.errors import ConfigError, StudioError
from studio.hub.download import ACTIVE, DownloadRequest, JobState
from studio.hub.download_errors import human_bytes

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
POLL_S = 0.25


def parse_models_args(argv: list[str], default_data_dir: Path) -> argparse.Namespace:
    """The `models` subcommand's command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=None, help="YAML config (its downloads: section sets mirrors and tokens)")
    common.add_argument("--data-dir", default=str(default_data_dir), help=f"the studio's data dir (default {default_data_dir})")
    p = argparse.ArgumentParser(prog="launch.py models", description="Download models and see their downloads.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("download", parents=[common], help="download a repository (run it again to resume)")
    d.add_argument("repo", help="owner/name, e.g. internlm/internlm2_5-1_8b-chat")
    d.add_argument("--source", choices=["huggingface", "modelscope"], default="huggingface", help="the hub (default huggingface)")
    d.add_argument("--dest", default=None, help="folder to download into (default <data dir>/models/<owner>/<name>)")
    d.add_argument("--revision", default="main", help="branch, tag or commit (default main; master on ModelScope)")
    d.add_argument("--endpoint", default=None, help="hub address, e.g. a mirror (default: config, HF_ENDPOINT / MODELSCOPE_ENDPOINT)")
    d.add_argument("--include", action="append", default=[], metavar="GLOB", help="only files matching GLOB (repeatable)")
    sub.add_parser("status", parents=[common], help="list the downloads this data dir knows and how far each got")
    ls = sub.add_parser("list", parents=[common], help="list the checkpoints on this machine (family, size, fit)")
    ls.add_argument("--dir", action="append", default=[], metavar="DIR",
                    help="search DIR instead of the configured folders (repeatable)")
    return p.parse_args(argv)


def run_models(argv: list[str], default_data_dir: Path, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run one `models` command; returns the exit status."""
    from studio.config import load_config
    from studio.services import build_downloads

    args = parse_models_args(argv, default_data_dir)
    try:
        config = load_config(args.config)
        data_dir = Path(args.data_dir).expanduser().resolve()
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        downloads = build_downloads(config, data_dir)
    except ConfigError as exc:
        return _fail(exc, err, EXIT_USAGE)
    except StudioError as exc:
        return _fail(exc, err, EXIT_FAILED)
    except OSError as exc:
        return _fail(StudioError(f"Cannot use the data directory {args.data_dir}: {exc}", "Pass a writable --data-dir."),
                     err, EXIT_FAILED)
    if args.command == "status":
        return _status(downloads, out)
    if args.command == "list":
        from studio.tasks.models_find import list_command

        return list_command(config, data_dir, args.dir, out)
    dest = Path(args.dest).expanduser() if args.dest else downloads.default_dest(args.repo)
    req = DownloadRequest(args.source, args.repo, args.revision, dest, args.endpoint, tuple(args.include))
    try:
        job_id = downloads.start(req)
    except StudioError as exc:
        return _fail(exc, err, EXIT_USAGE)
    return _follow(downloads, job_id, Console(out), err)


def _follow(downloads, job_id: str, console: Console, err: TextIO) -> int:
    """Show the job's progress until it ends; Ctrl-C cancels it and keeps what arrived."""
    try:
        while True:
            st = downloads.state(job_id)
            if st.state in ("done", "failed", "cancelled"):
                break
            console.status(progress_line(st, console.tty))
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        downloads.cancel(job_id)
        st = downloads.wait(job_id)
    console.clear_status()
    req = st.request
    if st.state == "done":
        resumed = f" ({human_bytes(st.resumed_bytes)} were already there)" if st.resumed_bytes else ""
        console.line(f"Downloaded {req.repo} into {req.dest}: {st.files_total} files, {human_bytes(st.total_bytes)}{resumed}.")
        return EXIT_OK
    if st.state == "cancelled":
        console.line(f"Cancelled. {human_bytes(st.done_bytes)} of {req.repo} are kept in {req.dest}; "
                     "run the same command again to resume.")
        return EXIT_CANCELLED
    return _fail(StudioError(st.error, st.hint), err, EXIT_FAILED)


def progress_line(st: JobState, tty: bool) -> str:
    """One line of progress; without a TTY it leaves out the byte count so it changes once per file."""
    what = {"queued": "waiting", "listing": "listing files", "verifying": "verifying"}.get(st.state, "downloading")
    if not st.files_total:
        return f"{st.request.repo}: {what}…"
    head = f"{st.request.repo}: {what} {st.current_file or ''}".rstrip()
    files = f"file {min(st.files_done + 1, st.files_total)}/{st.files_total}"
    if not tty:
        return f"{head} ({files})"
    pct = 100.0 * st.done_bytes / st.total_bytes if st.total_bytes else 100.0
    return f"{pct:5.1f}%  {human_bytes(st.done_bytes)} / {human_bytes(st.total_bytes)}  {files}  {head}"


def _status(downloads, out: TextIO) -> int:
    jobs = downloads.jobs()
    if not jobs:
        print("No downloads yet. Start one with: python launch.py models download OWNER/NAME", file=out)
    for st in jobs:
        # An active state read back from disk means the download was cut off; it resumes when started again.
        state = "interrupted" if st.state in ACTIVE and not downloads.running(st.id) else st.state
        line = f"{st.id}  {state:<11} {st.request.source:<11} {st.request.repo}  → {st.request.dest}"
        print(line + (f"\n    {st.error}" if st.error else ""), file=out)
    return EXIT_OK


def _fail(exc: StudioError, err: TextIO, code: int) -> int:
    print(f"error: {exc.message}", file=err)
    if exc.hint:
        print(f"  → {exc.hint}", file=err)
    err.flush()
    return code


def main(argv: Optional[list[str]], default_data_dir: Path) -> int:
    """Entry point from launch.py."""
    return run_models(list(argv or []), default_data_dir)
