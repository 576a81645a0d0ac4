"""The system panel: live memory per device (this studio vs. others), the loaded models, and
unloading, reloading or switching a model at run time."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.errors import InputError
from studio.services import Services
from studio.ui.errors import user_errors

GIB = 1024**3


def stats_markdown(stats: list) -> str:
    """A table: device, total, used by this process, used by others, free."""
    rows = ["| device | total | this studio | other processes | free |", "|---|---|---|---|---|"]
    for s in stats:
        others = max(0, s.used - s.ours)
        rows.append(f"| {s.name} | {s.total / GIB:.1f} GiB | {s.ours / GIB:.2f} GiB | {others / GIB:.2f} GiB | "
                    f"{(s.total - s.used) / GIB:.1f} GiB |")
    return "\n".join(rows)


def models_markdown(services: Services) -> str:
    """One row per configured engine: state, model, engine, family, dtype, device, memory."""
    pool = services.engines
    rows = ["| name | state | model | engine | family | dtype | device | memory | memory plan |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name in pool.names():
        st = pool.state(name)
        i = st.info
        state = {"ready": "🟢 ready", "loading": f"🟡 loading {st.progress:.0%}", "failed": "🔴 failed",
                 "idle": "⚪ not loaded"}[st.state]
        if i and st.state == "ready":
            rows.append(f"| {name} | {state} | {pool.label(name)} | {i.engine} | {i.family} | {i.dtype} | {i.device} | "
                        f"{i.memory_bytes / GIB:.2f} GiB | {i.extra.get('memory_plan', '')} |")
        else:
            detail = st.error or st.text
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
    devices = gr.Markdown(stats_markdown(services.device_stats()), elem_id="system-devices")
    models = gr.Markdown(models_markdown(services), elem_id="system-models")
    with gr.Row():
        name = gr.Dropdown(services.engines.names(), value=services.engines.names()[0], label=t("model"),
                           elem_id="system-engine")
        path = gr.Textbox(label=t("switch_path"), placeholder="/path/to/model", elem_id="system-path")
    with gr.Row():
        unload = gr.Button(t("unload"), size="sm", elem_id="system-unload")
        load = gr.Button(t("load"), size="sm", elem_id="system-load")
        switch = gr.Button(t("switch"), size="sm", variant="primary", elem_id="system-switch")
    return SystemTab(devices, models, name, path, unload, load, switch, gr.Timer(2.0, active=False))


class _Handlers:
    """The panel's event handlers (their parameter names are the public API's)."""

    def __init__(self, services: Services, tab: SystemTab) -> None:
        self.services, self.pool, self.tab = services, services.engines, tab

    def status(self) -> dict:
        return {self.tab.devices: stats_markdown(self.services.device_stats()),
                self.tab.models: models_markdown(self.services)}

    def on_open(self) -> dict:
        return {**self.status(), self.tab.timer: gr.Timer(active=True)}

    @user_errors
    def on_unload(self, name):
        self.pool.unload(name)
        return self.status()

    @user_errors
    def on_load(self, name):
        self.pool.start(name)
        return self.status()

    @user_errors
    def on_switch(self, name, path):
        if not (path or "").strip():
            raise InputError("No model path given.", "Type the folder (or .gguf file) of the model to switch to.")
        self.pool.switch(name, path)
        return self.status()


def wire(services: Services, tab: SystemTab, tab_item) -> None:
    """Refresh while the panel is open; unload / load / switch (API: system_status, system_unload, …)."""
    h, outs = _Handlers(services, tab), tab.outputs()
    tab_item.select(h.on_open, None, [*outs, tab.timer], api_name="system_status")
    tab.timer.tick(h.status, None, outs, api_visibility="private", queue=False)
    tab.unload.click(h.on_unload, [tab.name], outs, api_name="system_unload")
    tab.load.click(h.on_load, [tab.name], outs, api_name="system_load")
    tab.switch.click(h.on_switch, [tab.name, tab.path], outs, api_name="system_switch")
