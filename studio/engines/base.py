"""The engine contract: `prepare` turns messages into one valid request, `stream` only generates.

`prepare` does, once and the same way for every engine, what every caller needs: the system prompt
(an explicit empty one means none), the image refusal, the token count, the context-window check or
trim (with its notice), and the reply length that is left. Engines supply three small pieces:
`_encode` (tokens and the request in the engine's own form), `_image_cost` and `_generate`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional, Protocol

from studio.core.types import EngineInfo, GenParams, Message, Notice, TextDelta
from studio.engines.options import EngineOptions
from studio.errors import InputError, ModelNotReady
from studio.families.base import ImageCost

# progress(fraction 0..1, short description) — called from the loading thread.
ProgressFn = Callable[[float, str], None]
Fit = Literal["refuse", "trim"]


@dataclass(frozen=True)
class Placement:
    """Where a model may live: the device kind and how many GPUs it may span."""

    device: str  # "auto" | "cpu" | "cuda" (from the engine config)
    num_gpus: int = 1


@dataclass(frozen=True)
class LoadContext:
    """Everything an engine factory needs besides its config."""

    name: str
    placement: Placement
    cache_dir: Path
    progress: ProgressFn


@dataclass(frozen=True)
class Encoded:
    """An engine's reading of a prompt: its length in tokens and, when asked for, the request to run."""

    tokens: int
    payload: Any = None


@dataclass(frozen=True)
class Prepared:
    """One valid request: the messages as sent, the reply length left, and what the prompt costs."""

    messages: list[Message]
    params: GenParams  # max_new_tokens already fits the context window
    prompt_tokens: int
    payload: Any  # the engine's own form of the request (prompt ids, wire messages, a JSON body)
    max_tiles: Optional[int] = None
    tools: tuple[dict, ...] = ()  # OpenAI function schemas the model may call in this reply
    image_costs: tuple[ImageCost, ...] = ()
    dropped: int = 0  # earliest messages left out to fit the window (fit="trim")
    notices: tuple[Notice, ...] = field(default_factory=tuple)


class ContextOverflow(InputError):
    """The prompt cannot fit the model's context window (code for the API: context_length_exceeded)."""

    code = "context_length_exceeded"

    def __init__(self, message: str, hint: str, prompt_tokens: int, window: int) -> None:
        super().__init__(message, hint)
        self.prompt_tokens, self.window = prompt_tokens, window


class ImagesRefused(InputError):
    """Images sent to a model that reads text only (code for the API: images_not_supported)."""

    code = "images_not_supported"


class ToolsRefused(InputError):
    """Tools offered to a model that cannot call them (code for the API: tools_not_supported)."""

    code = "tools_not_supported"


def uses_tools(messages: list[Message], tools: tuple[dict, ...] = ()) -> bool:
    """True when a prompt declares tools, or holds tool calls, results or named tool-turn prompts."""
    return bool(tools) or any(m.role == "tool" or m.tool_call or m.name for m in messages)


class Engine(Protocol):
    """A loaded model that streams text; thread-safe as far as `batches` says."""

    accepts_images: bool
    batches: bool  # serves concurrent requests together (else one at a time)
    tools: bool  # the model can call tools (the agent tab)
    context_window: int

    def prepare(self, messages: list[Message], params: GenParams, *, max_tiles: Optional[int] = None,
                fit: Fit = "refuse", tools: tuple[dict, ...] = ()) -> Prepared:
        """One valid request, or InputError (ContextOverflow, ImagesRefused, ToolsRefused) saying what to change."""
        ...

    def stream(self, prepared: Prepared, cancel: threading.Event) -> Iterator[TextDelta]:
        """Yield text deltas; the last one has a finish reason (stop/length/cancelled/error)."""
        ...

    def image_cost(self, image: Any, max_tiles: Optional[int] = None) -> ImageCost:
        """Tiles and prompt tokens one image takes with this model."""
        ...

    def system_prompt(self) -> Optional[str]:
        """What is sent when a conversation brings no system message (None: the model decides)."""
        ...

    def info(self) -> EngineInfo:
        """Name, device, dtype, context window and memory, for the UI."""
        ...

    def close(self) -> None:
        """Free the model's memory; the engine is unusable afterwards."""
        ...


# An engine factory builds and loads an engine; registered in studio.engines.ENGINES.
EngineFactory = Callable[[EngineOptions, LoadContext], Engine]


class EngineBase:
    """What every engine does the same way; subclasses set the attributes and the three hooks."""

    accepts_images = False
    batches = False
    tools = False
    window_name = "context window"  # what the limit is called in messages (lmdeploy: session length)
    reserve = 0  # tokens kept free beyond the prompt (a count that may be a little short)
    vision_hint = "Load a vision model (e.g. --config configs/internvl2-2b.yaml), or remove the images."
    unloaded_hint = "Restart the studio to load it again."
    tools_hint = ("Load a model that calls tools, e.g. InternLM2-Chat "
                  "(--config configs/internlm2-chat-1_8b.yaml --model-path /path/to/internlm2-chat-1_8b).")
    # The model's own system prompt (the family's or the chat template's), used unless the config sets one.
    default_system_prompt: Optional[str] = None
    # Whether an explicit empty system message reaches the model (else it is left out: the same "none"
    # for a model with no default, without an empty system block).
    keeps_empty_system = True

    def __init__(self, options: EngineOptions, context_window: int) -> None:
        self.options = options
        self.context_window = context_window
        self._closed = False

    # ---- what each engine supplies -------------------------------------------------------------

    def label(self) -> str:
        """The model's name in messages."""
        return self.options.display_name()

    def _encode(self, messages: list[Message], max_tiles: Optional[int], final: bool,
                tools: tuple[dict, ...] = ()) -> Encoded:
        """The prompt's token count; with `final`, also the request in the engine's own form (with `tools`
        declared to the model, for engines that call tools)."""
        raise NotImplementedError

    def _image_cost(self, image: Any, max_tiles: Optional[int]) -> ImageCost:
        raise NotImplementedError

    def _generate(self, prepared: Prepared, cancel: threading.Event) -> Iterator[TextDelta]:
        raise NotImplementedError

    # ---- the contract ------------------------------------------------------------------------------

    def system_prompt(self) -> Optional[str]:
        """The configured system prompt, else the model's own default (None: none known)."""
        configured = self.options.system_prompt
        return configured if configured is not None else self.default_system_prompt

    def image_cost(self, image: Any, max_tiles: Optional[int] = None) -> ImageCost:
        """Tiles and prompt tokens one image takes with this model."""
        if not self.accepts_images:
            raise ImagesRefused(f"This model ({self.label()}) reads text only.", self.vision_hint)
        return self._image_cost(image, max_tiles or self.options.max_tiles)

    def prepare(self, messages: list[Message], params: GenParams, *, max_tiles: Optional[int] = None,
                fit: Fit = "refuse", tools: tuple[dict, ...] = ()) -> Prepared:
        """One valid request: system prompt applied, images checked, prompt counted, fitted to the window.

        fit="refuse": a prompt that leaves no room for a reply is refused (API clients keep their own
        history). fit="trim": the earliest turns are left out until the prompt and a reply of up to
        half the window fit, with a notice saying how many (the chat and image tabs)."""
        if self._closed:
            raise ModelNotReady("This model was unloaded.", self.unloaded_hint)
        tiles = max_tiles or self.options.max_tiles
        images = sum(len(m.images) for m in messages)
        if images and not self.accepts_images:
            raise ImagesRefused(f"This model ({self.label()}) reads text only; the conversation has "
                                f"{images} image(s).", self.vision_hint)
        tools = tuple(tools)
        if uses_tools(messages, tools) and not self.tools:
            raise ToolsRefused(f"This model ({self.label()}) cannot call tools.", self.tools_hint)
        sent = self._with_system(list(messages))
        window = self.context_window
        dropped, notices, encoded = 0, [], None
        if fit == "trim":
            room = min(params.max_new_tokens, window // 2)
            sent, dropped, encoded = self._trim(sent, window - room, room, tiles, tools)
            if dropped:
                lost = images - sum(len(m.images) for m in sent)
                shown = f" ({lost} image(s))" if lost else ""
                notices.append(Notice(f"{dropped} earliest message(s){shown} left out so the conversation fits "
                                      f"the model's {window:,}-token context window.", "warning",
                                      key="notice_trimmed_images" if lost else "notice_trimmed",
                                      args={"dropped": dropped, "images": lost, "window": window}))
            params = params.model_copy(update={"max_new_tokens": room})
        if encoded is None or encoded.payload is None:
            encoded = self._encode(sent, tiles, final=True, tools=tools)  # the trim's last count, when complete
        need = encoded.tokens
        if need + 1 >= window:
            raise ContextOverflow(
                f"The prompt is {need} tokens; this model's {self.window_name} is {window} tokens "
                "and at least one must remain for the reply.",
                "Shorten the message or the conversation, or start a new chat.", need, window)
        left = max(1, window - need - self.reserve)
        if params.max_new_tokens > left:
            params = params.model_copy(update={"max_new_tokens": left})
        costs = tuple(self._image_cost(img, tiles) for m in sent for img in m.images)
        return Prepared(sent, params, need, encoded.payload, max_tiles, tools, costs, dropped, tuple(notices))

    def stream(self, prepared: Prepared, cancel: threading.Event) -> Iterator[TextDelta]:
        """Yield text deltas, the last with a finish reason and the token counts."""
        if self._closed:
            raise ModelNotReady("This model was unloaded.", self.unloaded_hint)
        return self._generate(prepared, cancel)

    # ---- shared steps ------------------------------------------------------------------------------

    def _with_system(self, messages: list[Message]) -> list[Message]:
        """The system prompt applied once: the conversation's own, else the configured or model default.
        Named system messages in front (the agent's tool prompts) are not the system prompt: they stay first."""
        lead = 0
        while lead < len(messages) and messages[lead].role == "system" and messages[lead].name:
            lead += 1
        if lead:
            return messages[:lead] + self._with_system(messages[lead:])
        if messages and messages[0].role == "system":
            if messages[0].text or self.keeps_empty_system:
                return messages
            return messages[1:]  # explicitly none, for a model that adds nothing by itself
        prompt = self.system_prompt()
        if prompt is None or (not prompt and not self.keeps_empty_system):
            return messages
        return [Message.of("system", prompt), *messages]

    def _trim(self, messages: list[Message], budget: int, room: int, tiles: Optional[int],
              tools: tuple[dict, ...] = ()) -> tuple[list[Message], int, Optional[Encoded]]:
        """Drop the oldest whole exchanges until the prompt fits `budget` tokens; (messages, dropped,
        the last count)."""
        system = [m for m in messages[:1] if m.role == "system"]
        turns = messages[len(system):]
        dropped, encoded = 0, None
        while turns:
            encoded = self._encode(system + turns, tiles, final=False, tools=tools)
            need = encoded.tokens
            if need <= budget:
                break
            if len(turns) == 1:
                raise ContextOverflow(
                    f"The message takes {need:,} tokens; this model's {self.window_name} is "
                    f"{self.context_window:,} tokens, {room:,} of them kept for the reply.",
                    "Shorten the message or the system prompt, or lower max new tokens.", need, self.context_window)
            # Drop a whole exchange so the history never starts with an assistant turn.
            cut = 2 if len(turns) > 2 and turns[1].role == "assistant" else 1
            turns = turns[cut:]
            dropped += cut
        return system + turns, dropped, encoded


def generate(engine: Engine, messages: list[Message], params: GenParams, cancel: Optional[threading.Event] = None,
             max_tiles: Optional[int] = None) -> Iterator[TextDelta]:
    """prepare, then stream: one engine call outside the tasks (benchmarks, parity scripts, warm-up)."""
    return engine.stream(engine.prepare(messages, params, max_tiles=max_tiles), cancel or threading.Event())
