"""The system panel: live memory per device (this studio vs. others), the loaded models, and
unloading, reloading or switching a model at run time."""

from __future__ import annotations

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


def build(t, services: Services) -> dict:
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
    timer = gr.Timer(2.0, active=False)
    return dict(devices=devices, models=models, name=name, path=path, unload=unload, load=load, switch=switch,
                timer=timer)


def wire(services: Services, ui: dict, tab_item) -> None:
    """Refresh while the panel is open; unload / load / switch (API: system_status, system_unload, …)."""
    pool = services.engines

    def status():
        return stats_markdown(services.device_stats()), models_markdown(services)

    @user_errors
    def on_unload(name):
        pool.unload(name)
        return status()

    @user_errors
    def on_load(name):
        pool.start(name)
        return status()

    @user_errors
    def on_switch(name, path):
        if not (path or "").strip():
            raise InputError("No model path given.", "Type the folder (or .gguf file) of the model to switch to.")
        pool.switch(name, path)
        return status()

    outs = [ui["devices"], ui["models"]]
    tab_item.select(lambda: (*status(), gr.Timer(active=True)), None, [*outs, ui["timer"]], api_name="system_status")
    ui["timer"].tick(status, None, outs, api_visibility="private", queue=False)
    ui["unload"].click(on_unload, [ui["name"]], outs, api_name="system_unload")
    ui["load"].click(on_load, [ui["name"]], outs, api_name="system_load")
    ui["switch"].click(on_switch, [ui["name"], ui["path"]], outs, api_name="system_switch")
