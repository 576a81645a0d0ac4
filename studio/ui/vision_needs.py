"""The image tab's panel for a model that cannot read images: what the tab needs, the command that starts
one, and a box that switches the tab's engine to a vision model folder — in place of inputs that would fail."""

from __future__ import annotations

import re
from dataclasses import dataclass

import gradio as gr

from studio.errors import StudioError
from studio.services import Services
from studio.tasks import vision as vision_task
from studio.ui.i18n import page_lang, tr

COMMANDS = """```bash
python launch.py --config configs/internvl2-2b.yaml --model-path /path/to/InternVL2-2B
python launch.py --config configs/xcomposer2-vl-1_8b.yaml --model-path /path/to/internlm-xcomposer2-vl-1_8b
```"""


@dataclass
class NeedsPanel:
    """The panel and the inputs it stands in for."""

    panel: gr.Column
    inputs: gr.Row  # the tab's normal inputs (built by vision_tab)
    path: gr.Textbox
    switch: gr.Button
    notice: gr.Markdown

    def outputs(self) -> list:
        """What a refresh updates: which of the two shows."""
        return [self.panel, self.inputs]


def build_panel(t, services: Services) -> tuple[gr.Column, gr.Textbox, gr.Button, gr.Markdown]:
    """The panel, shown at first when the config already says the model reads text only."""
    with gr.Column(visible=not vision_task.sees_images(services), elem_id="vision-needs") as panel:
        gr.Markdown(t("vision_needs_title"), elem_id="vision-needs-title")
        gr.Markdown(t("vision_needs_body"))
        gr.Markdown(COMMANDS, elem_id="vision-needs-command")
        path = gr.Textbox(label=t("vision_switch_hint"), placeholder="/path/to/InternVL2-2B", max_lines=1,
                          elem_id="vision-needs-path")
        with gr.Row():
            switch = gr.Button(t("vision_switch"), variant="primary", scale=0, min_width=240,
                               elem_id="vision-needs-switch")
        notice = gr.Markdown("", elem_id="vision-needs-notice")
    return panel, path, switch, notice


def shown(services: Services, needs: NeedsPanel) -> dict:
    """The panel when the tab's model cannot read images, else the inputs."""
    sees = vision_task.sees_images(services)
    return {needs.panel: gr.Column(visible=not sees), needs.inputs: gr.Row(visible=sees)}


def _literal(text: str) -> str:
    """`text` shown as typed in a Markdown notice (a path's `*` or `_` is no emphasis)."""
    return re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", text)


def _switch(services: Services, needs: NeedsPanel, path: str, lang: str) -> dict:
    """Switch the tab's engine to the vision model at `path`; what went wrong goes in the panel, not a toast."""
    path = (path or "").strip()
    if not path:
        return {needs.notice: tr(lang, "vision_switch_empty")}
    engine, pool = vision_task.engine_name(services), services.engines
    try:
        if not vision_task.folder_sees_images(path):
            return {needs.notice: tr(lang, "vision_switch_text_only", model=path)}
        # The folder's own config.json names its family: the configured one described the old model.
        pool.switch(engine, path, family="auto")
    except StudioError as exc:
        return {needs.notice: _literal(str(exc))}
    text = tr(lang, "vision_switched", model=pool.label(engine))
    if engine == "chat":  # one engine behind both tabs (no `vision` engine configured)
        text += " " + tr(lang, "vision_switched_shared")
    return {**shown(services, needs), needs.notice: text}


def wire(services: Services, needs: NeedsPanel, tab_item=None) -> None:
    """Show the panel or the inputs on page load (and when the tab is opened); the switch (API: vision_switch)."""
    def refresh():
        return shown(services, needs)

    def on_switch(model_path, request: gr.Request):
        return _switch(services, needs, model_path, page_lang(request))

    triggers = [tab_item.select] if tab_item is not None else []
    gr.on(None, refresh, None, needs.outputs(), api_visibility="private", queue=False)
    if triggers:
        gr.on(triggers, refresh, None, needs.outputs(), api_visibility="private", queue=False)
    needs.switch.click(on_switch, [needs.path], [*needs.outputs(), needs.notice], api_name="vision_switch")
