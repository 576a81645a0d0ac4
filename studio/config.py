"""Studio configuration: the only place YAML is parsed; pydantic models, frozen after load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from studio.engines import ENGINES
from studio.engines.options import EngineOptions
from studio.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
DEFAULT_GALLERY = Path(__file__).resolve().parent.parent / "assets" / "gallery"


MAX_CONFIG_BYTES = 1024 * 1024
EXCERPT_CHARS = 120  # most characters of an offending value shown in an error message
MAX_ERRORS_SHOWN = 20

class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class AgentConfig(_Frozen):
    """The agent tab's tools: the sandboxed Python interpreter, ArXiv search, and the user's own tool files."""

    tools_folder: Optional[str] = None  # *.py files of typed, documented functions (read, never imported)
    arxiv: bool = True  # needs the network; offline it says so
    arxiv_url: str = "http://export.arxiv.org/api/query"
    max_steps: int = Field(5, ge=1, le=20)
    interpreter_timeout_s: float = Field(30.0, gt=0, le=600)


class ModelsConfig(_Frozen):
    """Where the model manager looks for checkpoints."""

    # None: the Hugging Face and ModelScope caches, /root/share/new_models, /share/new_models and <data>/models.
    search_dirs: Optional[list[str]] = Field(None, max_length=64)


class DownloadsConfig(_Frozen):
    """Model downloads (only when the user asks for one): hubs, mirrors, tokens, where folders go."""

    hf_endpoint: Optional[str] = None  # None: $HF_ENDPOINT, else https://huggingface.co (a mirror works too)
    modelscope_endpoint: Optional[str] = None  # None: $MODELSCOPE_ENDPOINT, else https://www.modelscope.cn
    dest_root: Optional[str] = None  # None: <data dir>/models; a download goes to <dest_root>/<owner>/<name>
    hf_token: Optional[str] = Field(None, repr=False)  # None: $HF_TOKEN or the `hf auth login` token
    modelscope_token: Optional[str] = Field(None, repr=False)  # None: $MODELSCOPE_API_TOKEN
    retries: int = Field(5, ge=0, le=100)  # attempts without progress before a dropped connection is reported
    retry_wait_s: float = Field(1.0, ge=0, le=60)  # the first back-off; it doubles up to 30 s
    timeout_s: float = Field(30.0, gt=0, le=600)  # connect / read timeout of one request

    @field_validator("hf_endpoint", "modelscope_endpoint")
    @classmethod
    def _endpoint(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise PydanticCustomError("endpoint", "must be an http:// or https:// address, e.g. https://hf-mirror.com")
        return value.rstrip("/") if value else value


class StudioConfig(_Frozen):
    """The whole config file; each engine block is validated by its own engine's options class."""

    ui: UIConfig = UIConfig()
    engines: dict[str, EngineOptions]
    article: ArticleConfig = ArticleConfig()
    api: ApiConfig = ApiConfig()
    agent: AgentConfig = AgentConfig()
    models: ModelsConfig = ModelsConfig()
    downloads: DownloadsConfig = DownloadsConfig()

    @field_validator("engines", mode="before")
    @classmethod
    def _engine_options(cls, value: Any) -> Any:
        # Blocks given as plain mappings (a config built in code) go to their engine's options class;
        # load_config does this itself first, so that errors keep their full key paths.
        if isinstance(value, dict):
            return {name: engine_options(block) if isinstance(block, dict) else block for name, block in value.items()}
        return value


def options_class(engine: object) -> type[EngineOptions]:
    """The options class of engine kind `engine`; ConfigError listing the known kinds."""
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ConfigError(f"{excerpt(engine)} unknown; known: {', '.join(ENGINES.names())}")
    return ENGINES.get(engine).options


def engine_options(block: dict) -> EngineOptions:
    """One engine block (a mapping) validated by its engine's options class (`engine:` defaults to hf)."""
    return options_class(block.get("engine", "hf")).model_validate(block)


def _refused_key(engine: str, key: str) -> str:
    """Why `key` is refused in an engine block: the engine's own note, or which engines read it."""
    cls = options_class(engine)
    if key in cls.refused:
        return cls.refused[key]
    readers = [n for n in ENGINES.names() if n != engine and key in ENGINES.get(n).options.model_fields]
    return f"only for engine: {' or '.join(readers)}" if readers else "unknown key"


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


def _format_validation(path: Path, err: ValidationError, prefix: tuple = (), engine: Optional[str] = None) -> str:
    lines = []
    errors = err.errors()
    for e in errors[:MAX_ERRORS_SHOWN]:
        loc = ".".join(_key(p) for p in (*prefix, *e["loc"])) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = _refused_key(engine, str(e["loc"][-1])) if engine and len(e["loc"]) == 1 else "unknown key"
        elif "input" in e and e["type"] not in ("missing", "secret"):
            msg = f"{msg} (got {excerpt(e['input'])})"
        lines.append(f"{path}: {loc}: {msg}")
    if len(errors) > MAX_ERRORS_SHOWN:
        lines.append(f"{path}: … and {len(errors) - MAX_ERRORS_SHOWN} more problems; fix these first.")
    return "\n".join(lines)


def _check_names(path: Path, cfg: StudioConfig) -> None:
    # Imported here: the family registry lives with the code it names.
    from studio.families import FAMILIES

    if "chat" not in cfg.engines:
        raise ConfigError(f"{path}: engines.chat: missing", "Every config needs an engine named 'chat'.")
    for alias, target in cfg.api.model_names.items():
        if target not in cfg.engines or alias in cfg.engines:
            raise ConfigError(f"{path}: api.model_names.{excerpt(alias)}: must name a configured engine and not be one; "
                              f"engines: {', '.join(cfg.engines)}")
    for name, eng in cfg.engines.items():
        if eng.family != "auto" and eng.family not in FAMILIES:
            raise ConfigError(
                f"{path}: engines.{_key(name)}.family: {excerpt(eng.family)} unknown; "
                f"known: auto, {', '.join(FAMILIES.names())}"
            )
        if (eng.family != "auto" and FAMILIES.get(eng.family)().needs_remote_code
                and not getattr(eng, "trust_remote_code", False)):
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
    data = {**data, "engines": _validate_engines(path, data.get("engines"))}
    try:
        cfg = StudioConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(path, exc)) from None
    _check_names(path, cfg)
    return cfg


def _validate_engines(path: Path, engines: Any) -> Any:
    """Each engine block through its own options class, errors named by file and key; others left to pydantic."""
    if not isinstance(engines, dict):
        return engines
    out, problems = {}, []
    for name, block in engines.items():
        if not isinstance(block, dict):
            out[name] = block  # StudioConfig says what it expected
            continue
        kind = block.get("engine", "hf")
        try:
            out[name] = options_class(kind).model_validate(block)
        except ConfigError as exc:
            problems.append(f"{path}: engines.{_key(name)}.engine: {exc.message}")
        except ValidationError as exc:
            problems.append(_format_validation(path, exc, ("engines", name), kind))
    if problems:
        raise ConfigError("\n".join(problems))
    return out
