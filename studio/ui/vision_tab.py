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
from studio.ui.pacing import FramePacer
from studio.ui.stops import StopSignals, run_key

UI_FRAME_S = 0.05
DEFAULT_TILES = 6  # InternVL2 allows 12; 6 keeps a CPU answer to seconds, and the slider raises it


@dataclass
class VisionTab:
    """The tab's components."""

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
    buttons: dict


def build(t, services: Services) -> VisionTab:
    """Lay out the tab inside the current Blocks context."""
    cfg = services.config.engines[vision_task.engine_name(services)]
    with gr.Row():
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
                describe = gr.Button(t("describe"), size="sm", elem_id="vision-describe")
                ocr = gr.Button(t("ocr"), size="sm", elem_id="vision-ocr")
                stop = gr.Button(t("stop"), size="sm", variant="stop", elem_id="vision-stop")
                regen = gr.Button(t("regenerate"), size="sm", elem_id="vision-regen")
                clear = gr.Button(t("clear"), size="sm", elem_id="vision-clear")
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
                extract = gr.Button(t("extract"), variant="primary", elem_id="vision-extract")
                result = gr.JSON(label=t("json_result"), elem_id="vision-result")
                result_file = gr.File(show_label=False, interactive=False, elem_id="vision-result-file")
    return VisionTab(chatbot, box, notice, cost, tiles, max_new, sample, schema, instructions, retries, result,
                     result_file, dict(describe=describe, ocr=ocr, stop=stop, regen=regen, clear=clear,
                                       extract=extract))


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


def _stream(events, sess: ChatSession, pacer: FramePacer, files: PrivateFiles, extra: int = 0):
    """Render task events: transcript, cleared input, session, notice (+ `extra` untouched outputs)."""
    notice, shown = "", 0.0
    tail = [gr.skip()] * extra
    yield transcript(sess, files), gr.skip(), sess, notice, *tail
    with pacer.streaming():
        for ev in events:
            if isinstance(ev, Notice):
                notice = ev.text if not notice else f"{notice}  \n{ev.text}"
                if ev.level == "warning":
                    gr.Warning(ev.text)
            elif isinstance(ev, TextDelta) and ev.finish_reason == "error":
                raise InputError(f"Generation failed: {ev.error}", "Try again; if it repeats, check the model.")
            elif isinstance(ev, vision_task.Extraction):
                tail = _extraction_outputs(ev, files)  # the result stays in every later update
                yield transcript(sess, files), gr.skip(), sess, notice, *tail
                continue
            if isinstance(ev, TextDelta) and not ev.finish_reason and not pacer.due(shown, UI_FRAME_S):
                continue
            shown = time.monotonic()
            yield transcript(sess, files), gr.skip(), sess, notice, *tail
    yield transcript(sess, files), gr.skip(), sess, notice, *tail  # the end, as the session holds it


def _emptying_the_box(updates):
    """The updates, the first of which also empties the input box (the images are in the transcript now)."""
    for i, update in enumerate(updates):
        yield (update[0], {"text": "", "files": []}, *update[2:]) if i == 0 else update


def _extraction_outputs(ev: vision_task.Extraction, files: PrivateFiles) -> list:
    if not ev.ok:
        gr.Warning(ev.error)
        return [{"error": ev.error, "attempts": ev.attempts}, None]
    path = files.export("extracted.json", json.dumps(ev.data, ensure_ascii=False, indent=2).encode("utf-8"))
    return [ev.data, str(path)]


def wire(services: Services, tab: VisionTab, session: gr.State, pacer: FramePacer) -> None:
    """Attach the tab's events (public API names: vision_ask, vision_describe, vision_ocr, …)."""
    name = vision_task.engine_name(services)
    model_queue = dict(concurrency_id=f"engine:{name}", concurrency_limit=services.engines.concurrency(name))
    outs = [tab.chatbot, tab.box, session, tab.notice]

    stops = StopSignals()  # Stop sets the running answer's cancel event (see studio/ui/stops.py)

    def ask(value, sess, tiles, max_new, sample, request, preset=None):
        _params(sess, max_new, sample)
        text = vision_task.PRESETS[preset] if preset else _text(value)
        with stops.run(run_key(request)) as cancel:
            events = vision_task.send(services, sess, text, _files(value), _tiles(tiles), cancel)
            yield from _emptying_the_box(_stream(events, sess, pacer, services.files))

    @user_errors
    def on_ask(message, sess, max_tiles, max_new_tokens, do_sample, request: gr.Request):
        yield from ask(message, sess, max_tiles, max_new_tokens, do_sample, request)

    @user_errors
    def on_describe(message, sess, max_tiles, max_new_tokens, do_sample, request: gr.Request):
        yield from ask(message, sess, max_tiles, max_new_tokens, do_sample, request, "describe")

    @user_errors
    def on_ocr(message, sess, max_tiles, max_new_tokens, do_sample, request: gr.Request):
        yield from ask(message, sess, max_tiles, max_new_tokens, do_sample, request, "ocr")

    @user_errors
    def on_regenerate(sess, max_tiles, max_new_tokens, do_sample, request: gr.Request):
        _params(sess, max_new_tokens, do_sample)
        with stops.run(run_key(request)) as cancel:
            yield from _stream(vision_task.regenerate(services, sess, _tiles(max_tiles), cancel), sess, pacer,
                               services.files)

    @user_errors
    def on_extract(message, sess, schema, instructions, retries, max_tiles, max_new_tokens, do_sample,
                   request: gr.Request):
        _params(sess, max_new_tokens, do_sample)
        json_extract.load_schema(schema)  # a broken schema is refused before anything else happens
        with stops.run(run_key(request)) as cancel:
            events = vision_task.extract(services, sess, schema, instructions or "", _files(message),
                                         _tiles(max_tiles), int(retries), cancel)
            yield from _emptying_the_box(_stream(events, sess, pacer, services.files, extra=2))

    def on_clear(sess):
        sess.messages.clear()
        sess.touch()
        return [], gr.skip(), sess, "", None, None

    def preview(files, max_tiles) -> str:
        if not files:
            return ""
        try:
            intakes = vision_task.load_images(services, files)
            if services.engines.state(name).state != "ready":
                return f"{len(intakes)} image(s) ready."
            engine = services.engines.get(name)
            if not engine.accepts_images:
                return f"⚠️ {engine.info().model} reads text only: images cannot be sent to it."
            return "🖼 " + vision_task.describe_costs(engine, intakes, _tiles(max_tiles))
        except StudioError as exc:
            return f"⚠️ {exc}"

    def on_preview(value, max_tiles, last_key):
        """What the attached images will cost (or why one cannot be used), before sending."""
        files = _files(value)
        key = json.dumps([files, max_tiles])
        if key == last_key:  # typing changes the box too: decode the images only when they change
            return gr.skip(), last_key
        return preview(files, max_tiles), key

    inputs = [tab.box, session, tab.tiles, tab.max_new, tab.sample]
    b = tab.buttons
    stops.forget_on(tab.box.submit, b["describe"].click, b["ocr"].click, b["regen"].click, b["extract"].click)
    tab.box.submit(on_ask, inputs, outs, api_name="vision_ask", **model_queue)
    b["describe"].click(on_describe, inputs, outs, api_name="vision_describe", **model_queue)
    b["ocr"].click(on_ocr, inputs, outs, api_name="vision_ocr", **model_queue)
    b["regen"].click(on_regenerate, [session, tab.tiles, tab.max_new, tab.sample], outs,
                     api_name="vision_regenerate", **model_queue)
    b["extract"].click(
        on_extract, [tab.box, session, tab.schema, tab.instructions, tab.retries, tab.tiles, tab.max_new, tab.sample],
        [*outs, tab.result, tab.result_file], api_name="vision_extract", **model_queue)
    stops.stop_on(b["stop"].click, tab.box.stop)
    b["clear"].click(on_clear, [session], [*outs, tab.result, tab.result_file], api_name="vision_clear")
    tab.chatbot.clear(on_clear, [session], [*outs, tab.result, tab.result_file], api_visibility="private")
    preview_key = gr.State("")
    gr.on([tab.box.change, tab.tiles.release], on_preview, [tab.box, tab.tiles, preview_key],
          [tab.cost, preview_key], api_visibility="private", queue=False)
