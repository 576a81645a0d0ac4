"""Prompt presets beside the chat's system prompt box: built-in ones, and the user's own saved in SQLite."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.errors import InputError
from studio.services import Services
from studio.tasks import chat as chat_task
from studio.ui.convert import user_of
from studio.ui.errors import user_errors
from studio.ui.i18n import page_lang, tr

BUILTIN = "builtin:"
# Built-in presets by key: the name is strings key preset_KEY, the prompt preset_KEY_text (both languages);
# "default" is the model's own system prompt (InternLM2's meta instruction, for one).
BUILTINS = ("default", "concise", "translator", "reviewer", "teacher")


@dataclass
class PresetControls:
    """The preset row: the picker, the name to save under, save and delete."""

    pick: gr.Dropdown
    name: gr.Textbox
    save: gr.Button
    delete: gr.Button


def build(t) -> PresetControls:
    """Lay out the preset row inside the current Blocks context (the chat tab's Parameters)."""
    with gr.Row(elem_id="prompt-presets", equal_height=True):
        builtin = [(t(f"preset_{key}"), BUILTIN + key) for key in BUILTINS]  # the user's join once known
        pick = gr.Dropdown(builtin, value=None, label=t("preset_pick"), elem_id="preset-pick", interactive=True,
                           scale=3)
        name = gr.Textbox(label=t("preset_name"), placeholder=t("preset_name_placeholder"), max_length=80,
                          elem_id="preset-name", scale=3)
        with gr.Column(scale=1, min_width=90):
            save = gr.Button(t("preset_save"), size="sm", elem_id="preset-save")
            delete = gr.Button(t("preset_delete"), size="sm", elem_id="preset-delete")
    return PresetControls(pick, name, save, delete)


class _Handlers:
    """List, apply, save and delete presets of the user the page belongs to."""

    def __init__(self, services: Services, engine: str, controls: PresetControls) -> None:
        self.services, self.store, self.engine, self.controls = services, services.presets, engine, controls

    def _choices(self, user: str, lang: str) -> list[tuple[str, str]]:
        builtin = [(tr(lang, f"preset_{key}"), BUILTIN + key) for key in BUILTINS]
        return builtin + [(p.title, p.id) for p in self.store.list(user)]

    def _picker(self, user: str, request: gr.Request, value=None) -> gr.Dropdown:
        return gr.Dropdown(choices=self._choices(user, page_lang(request)), value=value)

    @user_errors
    def on_list(self, uid: str, request: gr.Request):
        return self._picker(user_of(uid, request), request)

    @user_errors
    def on_apply(self, key: str, uid: str, request: gr.Request):
        if not key:
            return gr.skip()
        if key.startswith(BUILTIN) and key[len(BUILTIN):] in BUILTINS:
            if key == BUILTIN + "default":
                return chat_task.default_system_prompt(self.services, self.engine) or ""
            return tr(page_lang(request), f"preset_{key[len(BUILTIN):]}_text")
        return self.store.load(user_of(uid, request), key).text

    @user_errors
    def on_save(self, name: str, system_prompt: str, uid: str, request: gr.Request):
        user = user_of(uid, request)
        text = chat_task.validate_system_prompt(self.services, system_prompt)
        preset = self.store.save_named(user, name, text)
        gr.Info(tr(page_lang(request), "preset_saved", name=preset.title))
        return {self.controls.pick: self._picker(user, request, preset.id), self.controls.name: ""}

    @user_errors
    def on_delete(self, key: str, uid: str, request: gr.Request):
        lang, user = page_lang(request), user_of(uid, request)
        if not key:
            raise InputError(tr(lang, "preset_none_picked"), tr(lang, "preset_none_picked_hint"))
        if key.startswith(BUILTIN):
            raise InputError(tr(lang, "preset_builtin_kept"), tr(lang, "preset_builtin_kept_hint"))
        self.store.delete(user, key)
        return {self.controls.pick: self._picker(user, request)}


def wire(services: Services, chat, user_id: gr.State) -> None:
    """Attach the preset row of the chat tab `chat` to its system prompt box (public API: preset_*)."""
    controls, box = chat.presets, chat.settings.system_prompt
    if controls is None:
        return
    h = _Handlers(services, chat.engine, controls)
    user_id.change(h.on_list, [user_id], controls.pick, api_name="presets")
    controls.pick.input(h.on_apply, [controls.pick, user_id], box, api_name="preset_apply")
    save_inputs, outs = [controls.name, box, user_id], [controls.pick, controls.name]
    controls.save.click(h.on_save, save_inputs, outs, api_name="preset_save")
    controls.name.submit(h.on_save, save_inputs, outs, api_visibility="private")
    controls.delete.click(h.on_delete, [controls.pick, user_id], [controls.pick], api_name="preset_delete")
