"""Studio configuration: the only place YAML is parsed; pydantic models, frozen after load."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from studio.core.types import GenParams
from studio.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


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


class StudioConfig(_Frozen):
    """The whole config file."""

    ui: UIConfig = UIConfig()
    engines: dict[str, EngineConfig]


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
