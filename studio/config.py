"""Studio configuration: the only place YAML is parsed; pydantic models, frozen after load."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from studio.core.types import GenParams
from studio.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
DEFAULT_GALLERY = Path(__file__).resolve().parent.parent / "assets" / "gallery"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(_Frozen):
    """One model behind one or more tabs."""

    engine: str = "hf"
    family: str = "auto"
    model_path: str
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


class StudioConfig(_Frozen):
    """The whole config file."""

    ui: UIConfig = UIConfig()
    engines: dict[str, EngineConfig]
    article: ArticleConfig = ArticleConfig()


def _format_validation(path: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in e and e["type"] not in ("missing",):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{path}: {loc}: {msg}")
    return "\n".join(lines)


def _check_names(path: Path, cfg: StudioConfig) -> None:
    # Imported here: the registries live with the code they name, and stay light to import.
    from studio.engines import ENGINES
    from studio.families import FAMILIES

    if "chat" not in cfg.engines:
        raise ConfigError(f"{path}: engines.chat: missing", "Every config needs an engine named 'chat'.")
    for name, eng in cfg.engines.items():
        if eng.engine not in ENGINES:
            raise ConfigError(
                f"{path}: engines.{name}.engine: {eng.engine!r} unknown; known: {', '.join(ENGINES.names())}"
            )
        if eng.family != "auto" and eng.family not in FAMILIES:
            raise ConfigError(
                f"{path}: engines.{name}.family: {eng.family!r} unknown; "
                f"known: auto, {', '.join(FAMILIES.names())}"
            )
        if eng.family != "auto" and FAMILIES.get(eng.family)().needs_remote_code and not eng.trust_remote_code:
            raise ConfigError(
                f"{path}: engines.{name}.trust_remote_code: the {eng.family} family loads official "
                "checkpoints through the Python code shipped inside the checkpoint folder for now, "
                "so it needs trust_remote_code: true.",
                "Set it to true only for a checkpoint you trust.",
            )


def load_config(path: str | Path | None = None, model_path: Optional[str] = None) -> StudioConfig:
    """Read, validate and freeze a config; `model_path` overrides engines.chat.model_path."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found", f"Configs shipped: {', '.join(sorted(p.name for p in CONFIG_DIR.glob('*.yaml')))}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}", "Fix the syntax at the line shown.") from None
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
