"""The image-understanding tab: images + questions, presets, tile budget, schema-checked JSON extraction."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio import images as image_intake
from studio.core.session import ChatSession
from studio.core.types import GenParams, Notice, TextDelta
from studio.errors import InputError, StudioError
from studio.services import Services
from studio.store.private_files import PrivateFiles
from studio.tasks import json_extract
from studio.tasks import vision as vision_task
from studio.ui.errors import user_errors
from studio.ui.i18n import notice_text, page_lang
from studio.ui.icons import icon
from studio.ui.pacing import FramePacer
from studio.ui.stops import StopSignals, run_key
from studio.ui import vision_needs

UI_FRAME_S = 0.05
DEFAULT_TILES = 6  # InternVL2 allows 12; 6 keeps a CPU answer to seconds, and the slider raises it


@dataclass
class VisionButtons:
    """The tab's buttons."""

    describe: gr.Button
    ocr: gr.Button
    stop: gr.Button
    regen: gr.Button
    clear: gr.Button
    extract: gr.Button


@dataclass
class VisionTab:
    """The tab's components, its per-browser session and the engine it talks to."""

    engine: str
    session: gr.State
    chatbot: gr.Chatbot
    box: gr.MultimodalTextbox
    notice: gr.Markdown
    cost: gr.Markdown
    tiles: gr.Slider
    max_new: gr.Slider
    sample: gr.Checkbox
    schema: gr.Code
    instructions: gr.Textbox
    retries: gr.Slider
    result: gr.JSON
    result_file: gr.File
    buttons: VisionButtons
    needs: vision_needs.NeedsPanel  # stands in for the inputs while the model reads text only

    def answer_outputs(self) -> list:
        """What an answer updates."""
        return [self.chatbot, self.box, self.session, self.notice]

    def extraction_outputs(self) -> list:
        """What an extraction (or clearing) updates: an answer's outputs and the result."""
        return [*self.answer_outputs(), self.result, self.result_file]

    def settings_inputs(self) -> list:
        """The settings every question reads, in the handlers' argument order."""
        return [self.tiles, self.max_new, self.sample]


def build(t, services: Services, engine: str) -> VisionTab:
    """Lay out the tab inside the current Blocks context; it talks to `engine`."""
    cfg = services.config.engines[engine]
    session = gr.State(vision_task.new_session(services))
    panel, path, switch, switch_notice = vision_needs.build_panel(t, services)
    with gr.Row(visible=not panel.visible) as inputs:
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(elem_id="vision-chatbot", show_label=False, height="56vh", buttons=["copy"],
                                 sanitize_html=True, allow_tags=False, placeholder=t("vision_placeholder"))
            notice = gr.Markdown("", elem_id="vision-notice")
            box = gr.MultimodalTextbox(elem_id="vision-input", show_label=False, placeholder=t("vision_input"),
                                       # No file_types filter: Gradio would refuse other files with a
                                       # bare "Invalid file type: None"; studio.images says what is wrong.
                                       file_types=None, file_count="multiple", sources=["upload"],
                                       lines=1, max_lines=8, submit_btn=True)
            cost = gr.Markdown("", elem_id="vision-cost")
            with gr.Row(elem_classes=["chat-actions"]):
                describe = gr.Button(t("describe"), size="sm", elem_id="vision-describe", icon=icon("image"))
                ocr = gr.Button(t("ocr"), size="sm", elem_id="vision-ocr", icon=icon("text"))
                stop = gr.Button(t("stop"), size="sm", variant="stop", elem_id="vision-stop", icon=icon("stop"))
                regen = gr.Button(t("regenerate"), size="sm", elem_id="vision-regen", icon=icon("regenerate"))
                clear = gr.Button(t("clear"), size="sm", elem_id="vision-clear", icon=icon("trash"))
        with gr.Column(scale=2):
            tiles = gr.Slider(1, 12, value=cfg.max_tiles or DEFAULT_TILES, step=1, label=t("max_tiles"),
                              elem_id="vision-tiles")
            with gr.Row():
                max_new = gr.Slider(1, 4096, value=cfg.defaults.max_new_tokens, step=1, label=t("max_new_tokens"),
                                    elem_id="vision-max-new")
                sample = gr.Checkbox(cfg.defaults.do_sample, label=t("do_sample"))
            with gr.Accordion(t("extract_json"), open=True):
                schema = gr.Code(json.dumps(json_extract.DEFAULT_SCHEMA, indent=2), language="json",
                                 label=t("json_schema"), lines=8, max_lines=20, interactive=True,
                                 elem_id="vision-schema")
                instructions = gr.Textbox("", label=t("json_instructions"), lines=1)
                retries = gr.Slider(0, vision_task.MAX_RETRIES, value=2, step=1, label=t("json_retries"))
                extract = gr.Button(t("extract"), variant="primary", elem_id="vision-extract", icon=icon("braces"))
                result = gr.JSON(label=t("json_result"), elem_id="vision-result")
                result_file = gr.File(show_label=False, interactive=False, elem_id="vision-result-file")
    return VisionTab(engine, session, chatbot, box, notice, cost, tiles, max_new, sample, schema, instructions,
                     retries, result, result_file, VisionButtons(describe, ocr, stop, regen, clear, extract),
                     vision_needs.NeedsPanel(panel, inputs, path, switch, switch_notice))


def _thumb(image: Any, files: PrivateFiles) -> str:
    """A PNG thumbnail of `image` in the studio's private folder (named by content, written once)."""
    name = f"{image_intake.image_digest(image)[:24]}.png"
    return str(files.cached("thumbs", name, lambda: image_intake.thumbnail_png(image, 256)))


def transcript(session: ChatSession, files: PrivateFiles) -> list[dict]:
    """Messages-format Chatbot values with image thumbnails."""
    out = []
    for m in session.messages:
        if m.role not in ("user", "assistant"):
            continue
        for img in m.images:
            out.append({"role": m.role, "content": {"path": _thumb(img, files)}})
        if m.text or not m.images:
            out.append({"role": m.role, "content": m.text})
    return out


def _files(value: Any) -> list[tuple[str, str]]:
    """(display name, path) of the files in a MultimodalTextbox value."""
    files = (value or {}).get("files") or [] if isinstance(value, dict) else []
    out = []
    for f in files:
        path = f if isinstance(f, str) else (f.get("path") if isinstance(f, dict) else getattr(f, "path", None))
        if path:
            name = (f.get("orig_name") if isinstance(f, dict) else None) or Path(path).name
            out.append((name, path))
    return out


def _text(value: Any) -> str:
    return (value or {}).get("text", "") if isinstance(value, dict) else (value or "")


def _params(sess: ChatSession, max_new: Any, sample: Any) -> None:
    try:
        values = {**sess.params.model_dump(), "max_new_tokens": int(max_new), "do_sample": bool(sample)}
        sess.params = GenParams(**values)
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        first = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
        raise InputError(f"Invalid setting max_new_tokens={max_new!r}: {first}.", "Use the slider.") from None


def _tiles(value: Any) -> int:
    try:
        tiles = int(value)
    except (TypeError, ValueError):
        raise InputError(f"Max tiles must be a whole number (got {value!r}).", "Use the slider (1–12).") from None
    if not 1 <= tiles <= 40:
        raise InputError(f"Max tiles must be between 1 and 40 (got {tiles}).", "Use the slider (1–12).")
    return tiles


class _Handlers:
    """The tab's event handlers over one app's Services (their parameter names are the public API's)."""

    def __init__(self, services: Services, tab: VisionTab, pacer: FramePacer, preview_key: gr.State) -> None:
        self.services, self.tab, self.pacer, self.files = services, tab, pacer, services.files
        self.preview_key = preview_key  # the images and tiles the cost line was worked out for
        self.stops = StopSignals()  # Stop sets the running answer's cancel event (see studio/ui/stops.py)

    def _frame(self, sess: ChatSession, notice: str, result: dict) -> dict:
        tab = self.tab
        return {tab.chatbot: transcript(sess, self.files), tab.session: sess, tab.notice: notice, **result}

    def _extraction(self, ev: vision_task.Extraction) -> dict:
        tab = self.tab
        if not ev.ok:
            gr.Warning(ev.error)
            return {tab.result: {"error": ev.error, "attempts": ev.attempts}, tab.result_file: None}
        data = json.dumps(ev.data, ensure_ascii=False, indent=2).encode("utf-8")
        return {tab.result: ev.data, tab.result_file: str(self.files.export("extracted.json", data))}

    def _stream(self, events, sess: ChatSession, empty_box: bool = False, lang: str = "en"):
        """Render task events; the first update empties the input box (its images are in the transcript now)."""
        notice, shown, result = "", 0.0, {}
        yield {**self._frame(sess, notice, result), **({self.tab.box: {"text": "", "files": []}} if empty_box else {})}
        with self.pacer.streaming():
            for ev in events:
                if isinstance(ev, Notice):
                    text = notice_text(lang, ev)
                    notice = text if not notice else f"{notice}  \n{text}"
                    if ev.level == "warning":
                        gr.Warning(text)
                elif isinstance(ev, TextDelta) and ev.finish_reason == "error":
                    raise InputError(f"Generation failed: {ev.error}", "Try again; if it repeats, check the model.",
                                         key="err_generation_failed", values={"error": ev.error})
                elif isinstance(ev, vision_task.Extraction):
                    result = self._extraction(ev)  # the result stays in every later update
                elif isinstance(ev, TextDelta) and not ev.finish_reason and not self.pacer.due(shown, UI_FRAME_S):
                    continue
                shown = time.monotonic()
                yield self._frame(sess, notice, result)
        yield self._frame(sess, notice, result)  # the end, as the session holds it

    def _ask(self, value, sess, tiles, max_new, sample, request, preset=None):
        _params(sess, max_new, sample)
        text = vision_task.PRESETS[preset] if preset else _text(value)
        with self.stops.run(run_key(request)) as cancel:
            events = vision_task.send(self.services, sess, text, _files(value), _tiles(tiles), cancel)
            yield from self._stream(events, sess, empty_box=True, lang=page_lang(request))

    @user_errors
    def on_ask(self, message, sess, max_tiles, max_new_tokens, do_sample, request: gr.Request):
        yield from self._ask(message, sess, max_tiles, max_new_tokens, do_sample, request)

    @user_errors
    def on_describe(self, message, sess, max_tiles, max_new_tokens, do_sample, request: gr.Request):
        yield from self._ask(message, sess, max_tiles, max_new_tokens, do_sample, request, "describe")

    @user_errors
    def on_ocr(self, message, sess, max_tiles, max_new_tokens, do_sample, request: gr.Request):
        yield from self._ask(message, sess, max_tiles, max_new_tokens, do_sample, request, "ocr")

    @user_errors
    def on_regenerate(self, sess, max_tiles, max_new_tokens, do_sample, request: gr.Request):
        _params(sess, max_new_tokens, do_sample)
        with self.stops.run(run_key(request)) as cancel:
            yield from self._stream(vision_task.regenerate(self.services, sess, _tiles(max_tiles), cancel), sess,
                                    lang=page_lang(request))

    @user_errors
    def on_extract(self, message, sess, schema, instructions, retries, max_tiles, max_new_tokens, do_sample,
                   request: gr.Request):
        _params(sess, max_new_tokens, do_sample)
        json_extract.load_schema(schema)  # a broken schema is refused before anything else happens
        with self.stops.run(run_key(request)) as cancel:
            events = vision_task.extract(self.services, sess, schema, instructions or "", _files(message),
                                         _tiles(max_tiles), int(retries), cancel)
            yield from self._stream(events, sess, empty_box=True, lang=page_lang(request))

    def on_clear(self, sess):
        sess.messages.clear()
        sess.touch()
        return self._frame(sess, "", {self.tab.result: None, self.tab.result_file: None})

    def _cost(self, files, max_tiles) -> str:
        if not files:
            return ""
        try:
            intakes = vision_task.load_images(self.services, files)
            if self.services.engines.state(self.tab.engine).state != "ready":
                return f"{len(intakes)} image(s) ready."
            engine = self.services.engines.get(self.tab.engine)
            if not engine.accepts_images:
                return f"{engine.info().model} reads text only: images cannot be sent to it."
            return vision_task.describe_costs(engine, intakes, _tiles(max_tiles))
        except StudioError as exc:
            return str(exc)

    def on_preview(self, value, max_tiles, last_key):
        """What the attached images will cost (or why one cannot be used), before sending."""
        files = _files(value)
        key = json.dumps([files, max_tiles])
        if key == last_key:  # typing changes the box too: decode the images only when they change
            return gr.skip()
        return {self.tab.cost: self._cost(files, max_tiles), self.preview_key: key}


def wire(services: Services, tab: VisionTab, pacer: FramePacer, tab_item=None) -> None:
    """Attach the tab's events (public API names: vision_ask, vision_describe, vision_ocr, …, vision_switch);
    `tab_item` (the tab itself) re-checks on opening whether the model reads images."""
    vision_needs.wire(services, tab.needs, tab_item)
    h, b = _Handlers(services, tab, pacer, gr.State("")), tab.buttons
    model_queue = dict(concurrency_id=f"engine:{tab.engine}", concurrency_limit=services.engines.concurrency(tab.engine))
    settings, outs, extracted = tab.settings_inputs(), tab.answer_outputs(), tab.extraction_outputs()
    asks = [tab.box, tab.session, *settings]
    h.stops.forget_on(tab.box.submit, b.describe.click, b.ocr.click, b.regen.click, b.extract.click)
    tab.box.submit(h.on_ask, asks, outs, api_name="vision_ask", **model_queue)
    b.describe.click(h.on_describe, asks, outs, api_name="vision_describe", **model_queue)
    b.ocr.click(h.on_ocr, asks, outs, api_name="vision_ocr", **model_queue)
    b.regen.click(h.on_regenerate, [tab.session, *settings], outs, api_name="vision_regenerate", **model_queue)
    b.extract.click(h.on_extract, [tab.box, tab.session, tab.schema, tab.instructions, tab.retries, *settings],
                    extracted, api_name="vision_extract", **model_queue)
    h.stops.stop_on(b.stop.click, tab.box.stop)
    b.clear.click(h.on_clear, [tab.session], extracted, api_name="vision_clear")
    tab.chatbot.clear(h.on_clear, [tab.session], extracted, api_visibility="private")
    gr.on([tab.box.change, tab.tiles.release], h.on_preview, [tab.box, tab.tiles, h.preview_key],
          [tab.cost, h.preview_key], api_visibility="private", queue=False)
