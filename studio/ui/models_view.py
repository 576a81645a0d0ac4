"""What the Models tab shows, rendered in the page's language: the folders searched, the checkpoints found,
the download jobs and the progress line of the running one."""

from __future__ import annotations

import html
import re
import string
from pathlib import Path

from studio.tasks.models_find import Found, human_size
from studio.ui.i18n import strings, tr

ACTIVE = ("queued", "listing", "downloading", "verifying")

def cell(text: object) -> str:
    """Text safe inside a Markdown table cell (no HTML, no column breaks)."""
    return html.escape(str(text)).replace("|", "&#124;").replace("\n", " ")


def _rule(head: str) -> str:
    return "|" + "---|" * (head.count("|") - 1)


def folders_line(folders: list[Path], lang: str) -> str:
    """The searched folders, each absent one marked."""
    parts = [f"`{cell(f)}`" + ("" if Path(f).is_dir() else f" ({tr(lang, 'models_absent')})") for f in folders]
    return tr(lang, "models_folders", folders=", ".join(parts))


def _fit(f: Found, lang: str) -> str:
    if f.fits is None:
        return tr(lang, "models_fit_unknown")
    if f.fits:
        return tr(lang, "models_fits", need=human_size(f.need))
    free = re.search(r"([\d.]+) GiB free", f.plan)
    return tr(lang, "models_too_big", need=human_size(f.need), free=f"{free.group(1)} GiB" if free else "?")


def _files(f: Found, lang: str) -> str:
    text = tr(lang, "models_n_files", count=len(f.files), n=len(f.files))
    if f.missing:
        text += "; " + tr(lang, "models_missing", files=", ".join(f.missing))
    return text


def family_text(f: Found, lang: str) -> str:
    """The family name, or "unknown" with config.json's architectures."""
    return f.family if f.known else tr(lang, "models_unknown", arch=f.arch or "-")


def found_table(found: list[Found], device: str, lang: str) -> str:
    """One row per checkpoint: name, family, size, files, state, memory fit, folder."""
    if not found:
        return tr(lang, "models_none")
    head = tr(lang, "models_head", device=device)
    rows = [head, _rule(head)]
    for f in found:
        rows.append("| " + " | ".join([
            f"**{cell(f.name)}**", cell(family_text(f, lang)), human_size(f.size), cell(_files(f, lang)),
            tr(lang, f"models_state_{f.state}"), cell(_fit(f, lang)), f"`{cell(f.path)}`"]) + " |")
    return "\n".join(rows)


def choices(found: list[Found]) -> list[tuple[str, str]]:
    """The loadable checkpoints as (label, path) for the picker."""
    return [(f"{f.name} ({f.family}, {human_size(f.size)})", str(f.path)) for f in found if f.loadable]


def job_message(job, lang: str) -> str:
    """A failed job's error in `lang` (by the key the downloader gave it; its English when values are gone, as
    after a restart); for a running job, how much it resumed from."""
    if job.state == "failed":
        keys, words = (job.error_key, job.error_key + "_hint"), strings(lang)
        # A key this table lacks, or values lost (a job read back after a restart): the English is still right.
        if job.error_key and lang != "en" and all(k in words and _fields(words[k]) <= set(job.error_values)
                                                  for k in keys):
            return " ".join(words[k].format(**job.error_values) for k in keys)
        return f"{job.error} {job.hint}".strip()
    if job.resumed_bytes and job.state in ACTIVE:
        return tr(lang, "models_resumed", bytes=human_size(job.resumed_bytes))
    return ""


def _fields(text: str) -> set[str]:
    """The {placeholders} a string needs."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _source(job) -> str:
    return "Hugging Face" if job.request.source == "huggingface" else "ModelScope"


def jobs_table(jobs: list, lang: str) -> str:
    """Every download job, newest first: state, bytes, and what went wrong."""
    if not jobs:
        return tr(lang, "models_no_jobs")
    head = tr(lang, "models_jobs_head")
    rows = [head, _rule(head)]
    for job in reversed(jobs):
        done = f"{human_size(job.done_bytes)} / {human_size(job.total_bytes)}" if job.total_bytes else ""
        rows.append(f"| {cell(job.id)} | {cell(job.request.repo)} | {_source(job)} | "
                    f"{tr(lang, 'models_job_state_' + job.state)} | {done} | {cell(job_message(job, lang))} |")
    return "\n".join(rows)


def progress_html(job, lang: str) -> str:
    """A progress bar and one line for `job` (the newest one when none runs)."""
    if job is None:
        return ""
    current = tr(lang, "models_current", file=cell(job.current_file)) if job.current_file and job.state in ACTIVE else ""
    line = tr(lang, "models_progress", repo=cell(job.request.repo), state=tr(lang, "models_job_state_" + job.state),
              done=human_size(job.done_bytes), total=human_size(job.total_bytes), files_done=job.files_done,
              files_total=job.files_total, current=current)
    value = job.done_bytes if job.total_bytes else 0
    return (f'<div id="models-progress-line" data-state="{job.state}"><progress value="{value}" '
            f'max="{max(job.total_bytes, 1)}"></progress> <span>{line}</span></div>')
