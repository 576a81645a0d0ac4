"""The Models tab: checkpoints found on this machine (load one into a tab's engine), and downloads from
Hugging Face or ModelScope with a progress line polled while they run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import gradio as gr

from studio.errors import InputError, StudioError
from studio.tasks import models_find as find
from studio.hub.download import DownloadRequest
from studio.hub.download_list import check_repo
from studio.services import Services
from studio.tasks import agent as agent_task
from studio.tasks import vision as vision_task
from studio.ui import models_view as view
from studio.ui.errors import user_errors
from studio.ui.i18n import in_both, page_lang, tr

SOURCES = [("Hugging Face", "huggingface"), ("ModelScope", "modelscope")]


@dataclass
class ModelsTab:
    """The tab's components."""

    folders: gr.Markdown
    table: gr.Markdown
    refresh: gr.Button
    pick: gr.Dropdown
    engine: gr.Dropdown
    load: gr.Button
    notice: gr.Markdown
    source: gr.Radio
    repo: gr.Textbox
    dest: gr.Textbox
    endpoint: gr.Textbox
    start: gr.Button
    cancel: gr.Button
    job: gr.Dropdown
    progress: gr.HTML
    jobs: gr.Markdown
    timer: gr.Timer


def build(t, services: Services) -> ModelsTab:
    """Lay out the tab inside the current Blocks context; it fills in when opened."""
    folders = gr.Markdown("", elem_id="models-folders")
    table = gr.Markdown("", elem_id="models-table", elem_classes=["system-table"])
    refresh = gr.Button(t("models_refresh"), size="sm", elem_id="models-refresh")
    with gr.Row():
        pick = gr.Dropdown([], label=t("models_pick"), elem_id="models-pick", scale=3,
                           allow_custom_value=True)  # a folder typed in is checked as a found one is
        engine = gr.Dropdown(services.engines.names(), value="chat", label=t("models_engine"),
                             elem_id="models-engine", scale=2)
    load = gr.Button(t("models_load"), variant="primary", size="sm", elem_id="models-load")
    notice = gr.Markdown("", elem_id="models-notice")
    with gr.Group(elem_id="models-download"):
        gr.Markdown(t("models_download_head"))
        root = services.downloads.dest_root if services.downloads is not None else services.data_dir / "models"
        gr.Markdown(in_both(lambda lang: tr(lang, "models_dest_default", root=f"`{view.cell(root)}/<owner>/<name>`")),
                    elem_id="models-dest-default")
        with gr.Row():
            source = gr.Radio(SOURCES, value="huggingface", label=t("models_source"), elem_id="models-source")
            repo = gr.Textbox(label=t("models_repo"), placeholder=t("models_repo_hint"), elem_id="models-repo")
        with gr.Row():
            dest = gr.Textbox(label=t("models_dest"), elem_id="models-dest")
            endpoint = gr.Textbox(label=t("models_endpoint"), elem_id="models-endpoint")
        with gr.Row():
            start = gr.Button(t("models_start"), variant="primary", size="sm", elem_id="models-start")
            cancel = gr.Button(t("models_cancel"), size="sm", elem_id="models-cancel")
        # Any job id is accepted (an API client's session has no choices yet); the handlers check it.
        job = gr.Dropdown([], label=t("models_job"), elem_id="models-job", allow_custom_value=True)
        progress = gr.HTML("", elem_id="models-progress")
        jobs = gr.Markdown("", elem_id="models-jobs", elem_classes=["system-table"])
    return ModelsTab(folders, table, refresh, pick, engine, load, notice, source, repo, dest, endpoint, start,
                     cancel, job, progress, jobs, gr.Timer(1.0, active=False))


class _Handlers:
    """The tab's event handlers (their parameter names are the public API's)."""

    def __init__(self, services: Services, tab: ModelsTab) -> None:
        self.services, self.tab = services, tab
        self.downloads = services.downloads

    def _folders(self) -> list[Path]:
        return find.search_folders(self.services.config.models.search_dirs, self.services.data_dir)

    def _target(self) -> find.Target:
        return find.target_for(self.services.engines.config_of("chat"))

    def _engine_choices(self, lang: str) -> list[tuple[str, str]]:
        """Each engine with the tabs that talk to it (the chat engine serves every tab without its own)."""
        served = [("chat", "models_tabs_chat"), (vision_task.engine_name(self.services), "models_tabs_vision"),
                  (agent_task.engine_name(self.services), "models_tabs_agent")]
        pool = self.services.engines
        out = []
        for n in pool.names():
            tabs = ("、" if lang == "zh" else ", ").join(tr(lang, key) for engine, key in served if engine == n) or n
            out.append((tr(lang, "models_engine_choice", name=n, tabs=tabs, model=pool.label(n)), n))
        return out

    @user_errors
    def on_find(self, request: gr.Request):
        lang, folders, target = page_lang(request), self._folders(), self._target()
        found = find.find_checkpoints(folders, target)
        options = view.choices(found)
        return {self.tab.folders: view.folders_line(folders, lang),
                self.tab.table: view.found_table(found, target.device, lang),
                self.tab.pick: gr.Dropdown(choices=options, value=options[0][1] if options else None),
                self.tab.engine: gr.Dropdown(choices=self._engine_choices(lang))}

    @user_errors
    def on_load(self, path, engine, request: gr.Request):
        lang = page_lang(request)
        if not (path or "").strip():
            raise InputError("No checkpoint chosen.", "Pick one from the list.", key="models_err_no_pick")
        (f,) = self._inspect(Path(path.strip()))
        self.services.engines.switch(engine or "chat", str(f.path), family="auto")
        return {self.tab.notice: tr(lang, "models_loading", name=view.cell(f.name), engine=engine or "chat")}

    def _inspect(self, path: Path) -> list[find.Found]:
        """The finder's verdict on one path; refuses what must not be loaded, saying why."""
        roots = [r for r in self._folders() if path.is_relative_to(r)] or [path.parent]
        found = find.inspect(path, roots[0], self._target()) if path.exists() else []
        if not found:
            return [find.Found(path, path.name, path.parent, "", 0)]  # the switch says what is wrong with it
        f = found[0]
        if f.state == "partial":
            raise InputError(f"{path} is not a complete download.", "Start the same download again to finish it.",
                             key="models_err_partial", values={"path": str(path)})
        if f.missing:
            raise InputError(f"{path} lacks files: {', '.join(f.missing)}.", "Copy or download it again.",
                             key="models_err_missing", values={"path": str(path), "files": ", ".join(f.missing)})
        if not f.known:
            raise InputError(f"Cannot tell the model family of {path} ({f.arch}).", "Set `family:` in a config.",
                             key="models_err_unknown", values={"path": str(path)})
        return [f]

    def _need_downloads(self):
        if self.downloads is None:
            raise StudioError("Downloads are not available in this studio.", key="models_err_no_downloads")
        return self.downloads

    def _jobs_view(self, lang: str, selected: Optional[str] = None) -> dict:
        jobs = self.downloads.jobs() if self.downloads is not None else []
        running = [j for j in jobs if j.state in view.ACTIVE]
        shown = next((j for j in jobs if j.id == selected), None) or (running or jobs or [None])[-1]
        ids = [j.id for j in jobs]
        return {self.tab.jobs: view.jobs_table(jobs, lang), self.tab.progress: view.progress_html(shown, lang),
                self.tab.job: gr.Dropdown(choices=ids, value=shown.id if shown else None),
                self.tab.timer: gr.Timer(active=bool(running))}

    @user_errors
    def on_download(self, source, repo, dest, endpoint, request: gr.Request):
        lang, repo, source = page_lang(request), (repo or "").strip().strip("/"), source or "huggingface"
        if not repo:
            raise InputError("No repository id given.", "Type one like internlm/internlm2_5-1_8b-chat.",
                             key="models_err_no_repo")
        try:
            check_repo(source, repo)
        except InputError as exc:
            raise InputError(exc.message, exc.hint, key="models_err_bad_repo", values={"repo": repo}) from None
        downloads = self._need_downloads()
        target = Path(dest.strip()).expanduser() if (dest or "").strip() else downloads.default_dest(repo)
        job_id = downloads.start(DownloadRequest(source=source, repo=repo, dest=target,
                                                 endpoint=(endpoint or "").strip() or None))
        return {**self._jobs_view(lang, job_id), self.tab.notice: tr(lang, "models_started", id=job_id, repo=repo)}

    @user_errors
    def on_cancel(self, job, request: gr.Request):
        lang, downloads = page_lang(request), self._need_downloads()
        if job and job not in {j.id for j in downloads.jobs()}:
            raise InputError(f"There is no download {job!r}.", "Pick one from the list of downloads.",
                             key="models_err_no_job", values={"id": job})
        if job:
            downloads.cancel(job)
        notice = tr(lang, "models_cancelled", id=job) if job else ""
        return {**self._jobs_view(lang, job), self.tab.notice: notice}

    @user_errors
    def on_open_jobs(self, job, request: gr.Request):
        return self._jobs_view(page_lang(request), job)

    @user_errors
    def on_jobs(self, job, request: gr.Request):
        out = self._jobs_view(page_lang(request), job)
        if not out[self.tab.timer].active:
            out.update(self.on_find(request))  # the last download just ended: list what it brought
        return out


def wire(services: Services, tab: ModelsTab, tab_item):
    """Find on open and on Refresh; load; download, cancel, and poll the jobs while one runs. Returns the load
    event (the header's status follows it)."""
    h = _Handlers(services, tab)
    found_outs = [tab.folders, tab.table, tab.pick, tab.engine]
    job_outs = [tab.jobs, tab.progress, tab.job, tab.timer]
    tab_item.select(h.on_find, None, found_outs, api_visibility="private").then(
        h.on_open_jobs, [tab.job], job_outs, api_visibility="private")
    tab.refresh.click(h.on_find, None, found_outs, api_name="models_find")
    loaded = tab.load.click(h.on_load, [tab.pick, tab.engine], [tab.notice], api_name="models_load")
    tab.start.click(h.on_download, [tab.source, tab.repo, tab.dest, tab.endpoint], [*job_outs, tab.notice],
                    api_name="models_download")
    tab.cancel.click(h.on_cancel, [tab.job], [*job_outs, tab.notice], api_name="models_cancel")
    tab.timer.tick(h.on_jobs, [tab.job], [*job_outs, *found_outs], api_name="models_jobs")
    return loaded
