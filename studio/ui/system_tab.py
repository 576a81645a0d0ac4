"""The system panel: live memory per device (this studio vs. others), the loaded models, and
unloading, reloading or switching a model at run time."""

from __future__ import annotations

import re
from dataclasses import dataclass

import gradio as gr

from studio.errors import InputError
from studio.services import Services
from studio.ui.convert import status_dot
from studio.ui.errors import user_errors
from studio.ui.i18n import in_both, page_lang, tr

GIB = 1024**3
# studio.engines.memory.MemoryPlan.summary(), read back so the plan can be shown in the page's language
# (tests/unit/test_system_tab.py fails if the engine's wording drifts from this).
PLAN_RE = re.compile(r"needs ≈(?P<need>[\d.]+) GiB \(weights (?P<weights>[\d.]+) \+ KV cache (?P<kv>[\d.]+) "
                     r"\+ headroom (?P<headroom>[\d.]+)(?:, ≈(?P<each>[\d.]+) GiB on each of (?P<gpus>\d+) GPUs)?\); "
                     r"(?P<free>[\d.]+) GiB free on (?P<device>.+)$")


def _rule(head: str) -> str:
    return "|" + "---|" * (head.count("|") - 1)


def stats_markdown(stats: list, lang: str = "en") -> str:
    """A table in `lang`: device, total, used by this process, used by others, free."""
    head = tr(lang, "sys_devices_head")
    rows = [head, _rule(head)]
    for s in stats:
        others = max(0, s.used - s.ours)
        rows.append(f"| {s.name} | {s.total / GIB:.1f} GiB | {s.ours / GIB:.2f} GiB | {others / GIB:.2f} GiB | "
                    f"{(s.total - s.used) / GIB:.1f} GiB |")
    return "\n".join(rows)


def plan_text(summary: str, lang: str) -> str:
    """An engine's memory plan line in `lang` (a line in another form is shown as the engine wrote it)."""
    m = PLAN_RE.match(summary or "")
    if not m:
        return summary or ""
    parts = m.groupdict()
    split = tr(lang, "sys_plan_split", each=parts["each"], gpus=parts["gpus"]) if parts["gpus"] else ""
    return tr(lang, "sys_plan", **{**parts, "split": split})


def state_text(st, lang: str) -> str:
    """A model's state as a dot and a word in `lang`."""
    kind = st.state if st.state in ("ready", "loading", "failed") else "idle"
    return f"{status_dot(kind)} {tr(lang, f'sys_state_{kind}', progress=st.progress)}"


def models_markdown(services: Services, lang: str = "en") -> str:
    """One row per configured engine, in `lang`: state, model, engine, family, dtype, device, memory."""
    pool = services.engines
    head = tr(lang, "sys_models_head")
    rows = [head, _rule(head)]
    for name in pool.names():
        st = pool.state(name)
        i, state = st.info, state_text(st, lang)
        if i and st.state == "ready":
            rows.append(f"| {name} | {state} | {pool.label(name)} | {i.engine} | {i.family} | {i.dtype} | {i.device} | "
                        f"{i.memory_bytes / GIB:.2f} GiB | {plan_text(i.extra.get('memory_plan', ''), lang)} |")
        else:
            # A load's progress line is the engine's own English; a failure keeps its message (what to fix).
            detail = st.error or (st.text if lang == "en" else "")
            rows.append(f"| {name} | {state} | {pool.label(name)} | {pool.config_of(name).engine} | | | | | "
                        f"{detail[:120]} |")
    return "\n".join(rows)


@dataclass
class SystemTab:
    """The panel's components."""

    devices: gr.Markdown
    models: gr.Markdown
    name: gr.Dropdown
    path: gr.Textbox
    unload: gr.Button
    load: gr.Button
    switch: gr.Button
    timer: gr.Timer

    def outputs(self) -> list:
        """What every action refreshes."""
        return [self.devices, self.models]


def build(t, services: Services) -> SystemTab:
    """Lay out the panel inside the current Blocks context."""
    devices = gr.Markdown(in_both(lambda lang: stats_markdown(services.device_stats(), lang)),
                          elem_id="system-devices", elem_classes=["system-table"])
    models = gr.Markdown(in_both(lambda lang: models_markdown(services, lang)), elem_id="system-models",
                         elem_classes=["system-table"])
    with gr.Row():
        name = gr.Dropdown(services.engines.names(), value=services.engines.names()[0], label=t("model"),
                           elem_id="system-engine")
        path = gr.Textbox(label=t("switch_path"), placeholder=t("sys_path_placeholder"), elem_id="system-path")
    with gr.Row():
        unload = gr.Button(t("unload"), size="sm", elem_id="system-unload")
        load = gr.Button(t("load"), size="sm", elem_id="system-load")
        switch = gr.Button(t("switch"), size="sm", variant="primary", elem_id="system-switch")
    return SystemTab(devices, models, name, path, unload, load, switch, gr.Timer(2.0, active=False))


class _Handlers:
    """The panel's event handlers (their parameter names are the public API's)."""

    def __init__(self, services: Services, tab: SystemTab) -> None:
        self.services, self.pool, self.tab = services, services.engines, tab

    def status(self, request: gr.Request) -> dict:
        lang = page_lang(request)
        return {self.tab.devices: stats_markdown(self.services.device_stats(), lang),
                self.tab.models: models_markdown(self.services, lang)}

    def on_open(self, request: gr.Request) -> dict:
        return {**self.status(request), self.tab.timer: gr.Timer(active=True)}

    @user_errors
    def on_unload(self, name, request: gr.Request):
        self.pool.unload(name)
        return self.status(request)

    @user_errors
    def on_load(self, name, request: gr.Request):
        self.pool.start(name)
        return self.status(request)

    @user_errors
    def on_switch(self, name, path, request: gr.Request):
        if not (path or "").strip():
            raise InputError("No model path given.", "Type the folder (or .gguf file) of the model to switch to.",
                             key="err_no_model_path")
        self.pool.switch(name, path, family="auto")  # the new folder says what it is
        return self.status(request)


def wire(services: Services, tab: SystemTab, tab_item) -> None:
    """Refresh while the panel is open; unload / load / switch (API: system_status, system_unload, …)."""
    h, outs = _Handlers(services, tab), tab.outputs()
    tab_item.select(h.on_open, None, [*outs, tab.timer], api_name="system_status")
    tab.timer.tick(h.status, None, outs, api_visibility="private", queue=False)
    tab.unload.click(h.on_unload, [tab.name], outs, api_name="system_unload")
    tab.load.click(h.on_load, [tab.name], outs, api_name="system_load")
    tab.switch.click(h.on_switch, [tab.name, tab.path], outs, api_name="system_switch")
