"""Studio configuration: the only place YAML is parsed; pydantic models, frozen after load."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from studio.core.types import GenParams
from studio.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
DEFAULT_GALLERY = Path(__file__).resolve().parent.parent / "assets" / "gallery"


MAX_CONFIG_BYTES = 1024 * 1024
EXCERPT_CHARS = 120  # most characters of an offending value shown in an error message
MAX_ERRORS_SHOWN = 20

REMOTE_ENGINE = "openai_compat"
LMDEPLOY_ENGINE = "lmdeploy"
# Settings that only some engines read: which engines may set each one.
ENGINE_SPECIFIC = {
    **dict.fromkeys(("api_key_env", "remote_model", "timeout_s", "connect_timeout_s", "accepts_images"),
                    (REMOTE_ENGINE,)),
    **dict.fromkeys(("backend", "session_len", "cache_max_entry_count", "enable_prefix_caching", "engine_process"),
                    (LMDEPLOY_ENGINE,)),
    "max_batch_size": (LMDEPLOY_ENGINE, REMOTE_ENGINE),  # engines that batch concurrent requests
}


def base_url_problem(url: str) -> Optional[str]:
    """What is wrong with a remote engine's base URL, or None when it looks usable."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "has no host name"
    if parts.query or parts.fragment:
        return "must not have a query or fragment; give the API root, e.g. http://host:23333/v1"
    return None


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(_Frozen):
    """One model behind one or more tabs."""

    engine: str = "hf"
    family: str = "auto"
    # Required, except for the remote engine (which names its model with remote_model).
    model_path: Optional[str] = Field(None, validate_default=True)
    gguf_file: Optional[str] = None
    label: Optional[str] = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    context_window: Optional[int] = Field(None, ge=256, le=1_048_576)
    trust_remote_code: bool = False
    system_prompt: Optional[str] = None
    # Most 448-px tiles per image for tiling vision models (InternVL2); None: the checkpoint's value.
    max_tiles: Optional[int] = Field(None, ge=1, le=40)
    defaults: GenParams = GenParams()
    # engine: openai_compat — an OpenAI-compatible server (lmdeploy api_server / proxy, vLLM, another studio).
    base_url: Optional[str] = Field(None, validate_default=True)  # e.g. http://gpu-node:23333/v1
    api_key: Optional[str] = Field(None, repr=False)
    api_key_env: Optional[str] = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # read the key from this variable
    remote_model: Optional[str] = None  # None: the server's only model
    timeout_s: float = Field(60.0, gt=0, le=3600)  # most seconds between two chunks of a reply
    connect_timeout_s: float = Field(5.0, gt=0, le=120)
    accepts_images: Optional[bool] = None  # None: what the /models entry says (a studio tells), else False
    # engine: lmdeploy — continuous batching on NVIDIA GPUs (pip install -r requirements-lmdeploy.txt).
    backend: Literal["auto", "turbomind", "pytorch"] = "auto"  # auto: TurboMind when importable
    session_len: Optional[int] = Field(None, ge=256, le=1_048_576)  # None: context_window, else 8192
    max_batch_size: int = Field(32, ge=1, le=1024)  # also how many browser users stream at once (remote too)
    cache_max_entry_count: Optional[float] = Field(None, gt=0, lt=1)  # None: from the memory plan
    enable_prefix_caching: bool = True
    # PyTorch backend: run the engine in its own process (as lmdeploy's api_server does), so that the web
    # server's Python work and the engine's scheduling don't share one interpreter lock.
    engine_process: bool = True

    @model_validator(mode="before")
    @classmethod
    def _remote_label(cls, data):
        # The pool labels an engine by its model_path's name; a remote engine has none, so it goes
        # by the remote model's name (or the server's address) unless a label is given.
        if isinstance(data, dict) and data.get("engine") == REMOTE_ENGINE and not data.get("label"):
            name = data.get("remote_model") or urlsplit(str(data.get("base_url") or "")).netloc or REMOTE_ENGINE
            data = {**data, "label": str(name)}
        return data

    @field_validator("model_path")
    @classmethod
    def _model_path(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        remote = info.data.get("engine") == REMOTE_ENGINE
        if value is None and not remote:
            raise PydanticCustomError("missing", "Field required")
        if value is not None and remote:
            raise PydanticCustomError(
                "remote", "not used by engine openai_compat; name the server's model with remote_model")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        remote = info.data.get("engine") == REMOTE_ENGINE
        if value is None:
            if remote:
                raise PydanticCustomError("missing", "required for engine: openai_compat (e.g. http://host:23333/v1)")
            return value
        if not remote:
            raise PydanticCustomError("engine_mismatch", "only for engine: openai_compat")
        problem = base_url_problem(value)
        if problem:
            raise PydanticCustomError("base_url", problem)
        return value.rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _key_remote_only(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        if value is not None and info.data.get("engine") != REMOTE_ENGINE:
            raise PydanticCustomError("secret", "only for engine: openai_compat")  # "secret": never echoed
        return value

    @field_validator(*ENGINE_SPECIFIC)
    @classmethod
    def _engine_specific(cls, value, info: ValidationInfo):
        allowed = ENGINE_SPECIFIC[info.field_name]
        if value is not None and info.data.get("engine") not in allowed:
            why = " (a transformers model answers one request at a time)" if len(allowed) > 1 else ""
            raise PydanticCustomError("engine_mismatch", f"only for engine: {' or '.join(allowed)}{why}")
        return value

    @field_validator("family", "device", "dtype", "gguf_file")
    @classmethod
    def _lmdeploy_can_run(cls, value, info: ValidationInfo):
        # What lmdeploy cannot do is refused here, before anything loads; the hint names the way out.
        if info.data.get("engine") != LMDEPLOY_ENGINE:
            return value
        if info.field_name == "family" and value == "xcomposer2":
            raise PydanticCustomError(
                "lmdeploy", "XComposer2 is not supported by lmdeploy (lmdeploy 0.15 and later removed it); "
                "use engine: hf for this model")
        if info.field_name == "device" and value == "cpu":
            raise PydanticCustomError("lmdeploy", "the lmdeploy engine needs an NVIDIA GPU; use engine: hf on CPU")
        if info.field_name == "dtype" and value == "float32":
            raise PydanticCustomError("lmdeploy", "lmdeploy runs float16 or bfloat16; use auto, bfloat16 or float16")
        if info.field_name == "gguf_file" and value is not None:
            raise PydanticCustomError("lmdeploy", "GGUF files load with engine: hf only")
        return value


class UIConfig(_Frozen):
    """Shell settings."""

    title: str = "Puyu Studio"
    lang: Optional[Literal["en", "zh"]] = None  # None: follow the browser
    queue_max_size: int = Field(16, ge=1, le=1024)
    max_file_size: str = "20mb"
    max_prompt_chars: int = Field(100_000, ge=100, le=10_000_000)
    max_images_per_message: int = Field(8, ge=1, le=64)


def url_template_problem(template: str) -> Optional[str]:
    """What is wrong with an image-search URL template, or None when it is usable."""
    if "{query}" not in template:
        return "must contain {query}, where the caption goes"
    filled = template.replace("{query}", "q").replace("{k}", "4")
    if "{" in filled or "}" in filled:
        return "only the placeholders {query} and {k} are known"
    parts = urlsplit(filled)
    if parts.scheme.lower() not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "has no host name"
    return None


class ArticleSourceConfig(_Frozen):
    """One place article images come from: a local gallery folder, or an HTTP image-search service."""

    kind: Literal["gallery", "http"] = "gallery"
    name: str = Field("", max_length=40, pattern=r"^[A-Za-z0-9_-]*$")  # "" → the kind
    folder: Optional[str] = None  # gallery; None → the shipped assets/gallery
    url_template: Optional[str] = Field(None, validate_default=True)  # http: GET, {query} and optional {k}
    timeout_s: float = Field(5.0, gt=0, le=120)  # http
    max_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)  # http: per image
    max_results: int = Field(4, ge=1, le=16)  # http: most pictures downloaded per search
    headers: dict[str, str] = Field(default_factory=dict)  # http: e.g. an API key header

    @property
    def source_name(self) -> str:
        """The name the source goes by: `name`, or its kind when none is given."""
        return self.name or self.kind

    @field_validator("folder")
    @classmethod
    def _gallery_only(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        if value is not None and info.data.get("kind") == "http":
            raise PydanticCustomError("kind_mismatch", "only for kind: gallery")
        return value

    @field_validator("url_template")
    @classmethod
    def _template(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        kind = info.data.get("kind")
        if kind == "gallery" and value is not None:
            raise PydanticCustomError("kind_mismatch", "only for kind: http")
        if kind == "http":
            if not value:
                raise PydanticCustomError("missing", "required for kind: http")
            problem = url_template_problem(value)
            if problem:
                raise PydanticCustomError("url_template", problem)
        return value

    @field_validator("timeout_s", "max_bytes", "max_results", "headers")
    @classmethod
    def _http_only(cls, value, info: ValidationInfo):
        if info.data.get("kind") == "gallery":
            raise PydanticCustomError("kind_mismatch", "only for kind: http")
        return value


class ArticleConfig(_Frozen):
    """Where article images come from, and how many candidates each position offers."""

    sources: list[ArticleSourceConfig] = Field(default_factory=lambda: [ArticleSourceConfig()])
    candidates: int = Field(4, ge=1, le=8)

    @field_validator("sources")
    @classmethod
    def _distinct_names(cls, value: list[ArticleSourceConfig]) -> list[ArticleSourceConfig]:
        names = [s.source_name for s in value]
        for name in names:
            if names.count(name) > 1:
                # Names are [A-Za-z0-9_-] only, so no braces reach pydantic's message template.
                raise PydanticCustomError("duplicate_name", f"two sources are named {name!r}; give each its own name")
        return value


class ApiConfig(_Frozen):
    """The OpenAI-compatible API served beside the UI under /v1 (see README)."""

    enabled: bool = True
    # Bearer keys; empty: the launch credentials (--auth) are the key, or, with neither, only a
    # studio listening on localhost answers (the API must never be open on a public address).
    keys: list[str] = Field(default_factory=list, repr=False)
    # Extra model ids a client may ask for, each naming a configured engine (e.g. "internlm2": chat).
    model_names: dict[str, str] = Field(default_factory=dict)

    @field_validator("keys")
    @classmethod
    def _strong_keys(cls, value: list[str]) -> list[str]:
        if any(len(k) < 8 or k != k.strip() for k in value):
            raise PydanticCustomError("weak_key", "each key needs at least 8 characters and no surrounding spaces")
        return value


class StudioConfig(_Frozen):
    """The whole config file."""

    ui: UIConfig = UIConfig()
    engines: dict[str, EngineConfig]
    article: ArticleConfig = ArticleConfig()
    api: ApiConfig = ApiConfig()


def excerpt_text(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` cut to `limit` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """repr(value), cut to `limit` characters: error messages never echo a whole huge value."""
    return excerpt_text(repr(value), limit)


def _key(part: object) -> str:
    """One part of a key path, as written, or an excerpt when it is too long to show."""
    text = str(part)
    return text if len(text) <= EXCERPT_CHARS else excerpt(text)


def _format_validation(path: Path, err: ValidationError) -> str:
    lines = []
    errors = err.errors()
    for e in errors[:MAX_ERRORS_SHOWN]:
        loc = ".".join(_key(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in e and e["type"] not in ("missing", "secret"):
            msg = f"{msg} (got {excerpt(e['input'])})"
        lines.append(f"{path}: {loc}: {msg}")
    if len(errors) > MAX_ERRORS_SHOWN:
        lines.append(f"{path}: … and {len(errors) - MAX_ERRORS_SHOWN} more problems; fix these first.")
    return "\n".join(lines)


def _check_names(path: Path, cfg: StudioConfig) -> None:
    # Imported here: the registries live with the code they name, and stay light to import.
    from studio.engines import ENGINES
    from studio.families import FAMILIES

    if "chat" not in cfg.engines:
        raise ConfigError(f"{path}: engines.chat: missing", "Every config needs an engine named 'chat'.")
    for alias, target in cfg.api.model_names.items():
        if target not in cfg.engines or alias in cfg.engines:
            raise ConfigError(f"{path}: api.model_names.{excerpt(alias)}: must name a configured engine and not be one; "
                              f"engines: {', '.join(cfg.engines)}")
    for name, eng in cfg.engines.items():
        if eng.engine not in ENGINES:
            raise ConfigError(
                f"{path}: engines.{_key(name)}.engine: {excerpt(eng.engine)} unknown; known: {', '.join(ENGINES.names())}"
            )
        if eng.family != "auto" and eng.family not in FAMILIES:
            raise ConfigError(
                f"{path}: engines.{_key(name)}.family: {excerpt(eng.family)} unknown; "
                f"known: auto, {', '.join(FAMILIES.names())}"
            )
        if eng.family != "auto" and FAMILIES.get(eng.family)().needs_remote_code and not eng.trust_remote_code:
            raise ConfigError(
                f"{path}: engines.{_key(name)}.trust_remote_code: the {eng.family} family loads official "
                "checkpoints through the Python code shipped inside the checkpoint folder for now, "
                "so it needs trust_remote_code: true.",
                "Set it to true only for a checkpoint you trust.",
            )


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases: a few hundred bytes of nested aliases expand to gigabytes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError(f"{self.name}: line {mark.line + 1}: YAML aliases (*name) are not supported",
                              "Write the value out in full where it is used; YAML aliases are refused.")
        return super().compose_node(parent, index)


def _read_yaml(path: Path):
    """The parsed YAML of `path`: at most MAX_CONFIG_BYTES, no aliases, nesting bounded by the recursion limit."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)  # never more: the path could be a huge file or /dev/zero
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found", f"Configs shipped: {', '.join(sorted(p.name for p in CONFIG_DIR.glob('*.yaml')))}.") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config file is larger than {MAX_CONFIG_BYTES // 1024} KiB",
                          "A studio config is a few kilobytes; check that --config names the right file.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read config: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    loader = _NoAliasLoader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {excerpt_text(str(exc), 600)}", "Fix the syntax at the line shown.") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply", "A studio config nests a few levels only.") from None
    finally:
        loader.dispose()


def load_config(path: str | Path | None = None, model_path: Optional[str] = None) -> StudioConfig:
    """Read, validate and freeze a config; `model_path` overrides engines.chat.model_path."""
    path = Path(path) if path else DEFAULT_CONFIG
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: (top level): expected a mapping with an 'engines' key, got {type(data).__name__}")
    if model_path:
        chat = data.setdefault("engines", {}).setdefault("chat", {})
        if not isinstance(chat, dict):
            raise ConfigError(f"{path}: engines.chat: expected a mapping")
        chat["model_path"] = model_path
        chat.pop("gguf_file", None)
    try:
        cfg = StudioConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(path, exc)) from None
    _check_names(path, cfg)
    return cfg
