"""Image understanding: questions about uploaded images, multi-turn, and schema-checked JSON extraction."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from studio import images as image_intake
from studio.core.session import ChatSession
from studio.core.types import ImagePart, Message, Notice, TextDelta, TextPart
from studio.engines.base import Engine
from studio.engines.options import LocalOptions
from studio.errors import InputError, StudioError
from studio.services import Services
from studio.tasks import json_extract, turn
from studio.tasks.user_text import validate_prompt

PRESETS = {
    "describe": "Describe this image in detail.",
    "ocr": "Read all the text in this image and write it out exactly, keeping the line breaks.",
}
MAX_RETRIES = 3


@dataclass(frozen=True)
class Extraction:
    """The outcome of a JSON extraction: schema-valid data, or why there is none."""

    ok: bool
    data: Any
    error: str
    attempts: int
    raw: str


VisionEvent = Union[TextDelta, Notice, Extraction]


def engine_name(services: Services) -> str:
    """The engine behind the image tab: one named `vision` if configured, else the chat engine."""
    return "vision" if "vision" in services.config.engines else "chat"


def new_session(services: Services) -> ChatSession:
    """A fresh image conversation on the image tab's engine."""
    name = engine_name(services)
    cfg = services.config.engines[name]
    return ChatSession(engine=name, params=cfg.defaults)  # the engine applies the model's system prompt


def load_images(services: Services, files: list[tuple[str, str]]) -> list[image_intake.Intake]:
    """(display name, path) uploads → normalised images; InputError naming a file that cannot be used."""
    limit = services.config.ui.max_images_per_message
    if len(files) > limit:
        raise InputError(f"{len(files)} images in one message; the limit is {limit}.",
                         f"Send at most {limit} images at a time (ask about the rest in the next message).")
    return [image_intake.load_image(Path(path), name=name) for name, path in files]


def describe_costs(engine: Engine, intakes: list[image_intake.Intake], max_tiles: Optional[int]) -> str:
    """One line per image: size, tiles and the prompt tokens it takes."""
    lines = []
    for it in intakes:
        cost = engine.image_cost(it.image, max_tiles)
        w, h = it.image.size
        lines.append(f"{it.name}: {w}×{h} → {cost.tiles} tile(s), {cost.tokens:,} tokens")
    return "; ".join(lines)


def _generate(services: Services, session: ChatSession, max_tiles: Optional[int],
              cancel: threading.Event) -> Iterator[Union[TextDelta, Notice]]:
    """Stream the reply to the session's last user message; returns the reply text."""
    session.messages.append(Message.of("assistant", ""))

    def show(reply: turn.Reply) -> None:
        session.messages[-1] = Message.of("assistant", reply.text)

    try:
        reply = yield from turn.shown(turn.run(services, session.engine, session.prompt_messages()[:-1],
                                               session.params, cancel, max_tiles=max_tiles, fit="trim",
                                               on_text=show))
    finally:
        if not session.messages[-1].text:
            session.messages.pop()
        session.touch()
    return reply.text


def _add_user_turn(services: Services, session: ChatSession, text: str, files: list[tuple[str, str]],
                   max_tiles: Optional[int]) -> Iterator[Notice]:
    """Check the uploads and question, append the user message, and say what the images cost."""
    intakes = load_images(services, files)
    if not intakes and not any(m.images for m in session.messages):
        raise InputError("There is no image to ask about yet.", "Drag, paste or upload an image, then ask your question.",
                         key="err_no_image")
    text = validate_prompt(services, text)
    if session.messages and session.messages[-1].role == "user":
        session.messages.pop()  # an earlier question that never got a reply: replace it
    parts: list = [ImagePart(it.image) for it in intakes]
    session.messages.append(Message("user", parts + [TextPart(text)]))
    for it in intakes:
        for note in it.notes:
            yield Notice(note, "warning")
    if intakes:
        engine = services.engines.get(session.engine) if services.engines.state(session.engine).state == "ready" else None
        if engine is not None and engine.accepts_images:
            yield Notice(describe_costs(engine, intakes, max_tiles))


def send(services: Services, session: ChatSession, text: str, files: list[tuple[str, str]],
         max_tiles: Optional[int] = None, cancel: Optional[threading.Event] = None) -> Iterator[VisionEvent]:
    """Ask about the attached images (or the conversation's earlier ones) and stream the answer."""
    if not (text or "").strip() and files:
        text = PRESETS["describe"]  # an image sent without a question: describe it
    yield from _add_user_turn(services, session, text, files, max_tiles)
    yield from _generate(services, session, max_tiles, cancel or threading.Event())


def regenerate(services: Services, session: ChatSession, max_tiles: Optional[int] = None,
               cancel: Optional[threading.Event] = None) -> Iterator[VisionEvent]:
    """Drop the last answer and generate it again."""
    if session.messages and session.messages[-1].role == "assistant":
        session.messages.pop()
    if not session.messages:
        raise InputError("There is nothing to regenerate yet.", "Ask a question about an image first.",
                         key="err_nothing_to_regenerate_vision")
    yield from _generate(services, session, max_tiles, cancel or threading.Event())


def extract(services: Services, session: ChatSession, schema_text: str, instructions: str,
            files: list[tuple[str, str]], max_tiles: Optional[int] = None, retries: int = 2,
            cancel: Optional[threading.Event] = None) -> Iterator[VisionEvent]:
    """Ask for JSON matching the schema; re-ask with the validation error up to `retries` times."""
    schema = json_extract.load_schema(schema_text)
    retries = max(0, min(int(retries), MAX_RETRIES))
    cancel = cancel or threading.Event()
    yield from _add_user_turn(services, session, json_extract.first_prompt(schema, instructions), files, max_tiles)
    for attempt in range(1, retries + 2):
        answer = yield from _generate(services, session, max_tiles, cancel)
        if cancel.is_set():
            yield Extraction(False, None, "Stopped before a valid answer arrived.", attempt, answer)
            return
        try:
            value = json_extract.parse_answer(answer)
            problems = json_extract.schema_errors(value, schema)
        except ValueError as exc:
            problems = [str(exc)]
        if not problems:
            yield Extraction(True, value, "", attempt, answer)
            return
        problem = "; ".join(problems)
        if attempt > retries:
            yield Extraction(False, None, f"No schema-valid JSON after {attempt} attempt(s). Last problem: {problem}.",
                             attempt, answer)
            return
        yield Notice(f"Attempt {attempt}: {problem}. Asking the model again ({attempt}/{retries}).", "warning",
                     key="notice_json_retry", args={"attempt": attempt, "problem": problem, "retries": retries})
        session.messages.append(Message.of("user", json_extract.retry_prompt(problem)))


def folder_sees_images(model_path: str, family: str = "auto", gguf_file: Optional[str] = None) -> bool:
    """Whether the model in `model_path` (its family named, or read from its config.json) reads images;
    StudioError when the folder holds no model that can be told."""
    from studio.engines.hf_loading import resolve_model_files
    from studio.families.detect import resolve_family

    if family != "auto":
        return bool(resolve_family(family, None).accepts_images)
    files = resolve_model_files(model_path, gguf_file)
    return bool(resolve_family("auto", None if files.gguf else files.model_dir).accepts_images)


def sees_images(services: Services) -> bool:
    """Whether the image tab's model reads images: the loaded engine says; before it has loaded, its config
    (family, or a remote server's accepts_images); a model that failed to load reads nothing."""
    name = engine_name(services)
    st, cfg = services.engines.state(name), services.engines.config_of(name)
    if st.state == "ready" and st.info is not None:
        return st.info.accepts_images
    if st.state == "failed":
        return False
    if not isinstance(cfg, LocalOptions):  # no model folder (a remote server): its accepts_images; None: it says
        return getattr(cfg, "accepts_images", None) is not False
    try:
        return folder_sees_images(cfg.model_path, cfg.family, getattr(cfg, "gguf_file", None))
    except StudioError:
        return False  # no readable model there: loading will fail too
