"""Choose a model family: the configured name, or `auto` from the checkpoint's config.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from studio.errors import StudioError
from studio.families.base import ModelFamily

# config.json `architectures` of the official checkpoints each family loads natively.
_ARCH_FAMILIES = {
    "InternLMForCausalLM": "internlm",
    "InternLM2ForCausalLM": "internlm2",  # InternLM2-Chat and InternLM2.5-Chat (the same architecture)
    "InternLM3ForCausalLM": "internlm3",
    "InternVLChatModel": "internvl2",
    "InternLMXComposer2ForCausalLM": "xcomposer2",
    "InternLMXComposerForCausalLM": "xcomposer",
}
# InternVLChatModel covers several generations; config.json `template` tells them apart.
_INTERNVL_TEMPLATES = {"internvl2_5": "internvl2_5"}


def _read_config(model_dir: Path) -> Optional[dict]:
    """config.json as a dict, None when the folder has none (e.g. a GGUF-only folder)."""
    path = model_dir / "config.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StudioError(
            f"{path}: cannot read config.json: {exc}",
            "The checkpoint looks damaged; copy it again, or set `family:` explicitly.",
        ) from None
    if not isinstance(data, dict):
        raise StudioError(f"{path}: config.json is not a JSON object.", "The checkpoint looks damaged.")
    return data


def _native_model_types() -> set[str]:
    """model_type values transformers can build without remote code."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return set(CONFIG_MAPPING_NAMES)


def _known_families() -> str:
    """The registered family names, for the refusal's hint."""
    from studio.families import FAMILIES

    return ", ".join(sorted(FAMILIES.names()))


def _guess(config: dict, where: Path) -> str:
    """A family name from config.json `architectures` / `model_type`."""
    archs = [str(a) for a in (config.get("architectures") or [])]
    model_type = str(config.get("model_type") or "")
    families = {_ARCH_FAMILIES.get(a) for a in archs}
    if len(archs) == 1 and None not in families:
        family = families.pop()
        return _INTERNVL_TEMPLATES.get(str(config.get("template")), family) if family == "internvl2" else family
    if families - {None}:
        # One of ours listed next to something else: guessing could load the wrong weights.
        raise StudioError(
            f"{where}: config.json lists several architectures ({', '.join(archs)}); cannot tell the family.",
            "Set `family:` explicitly in the config.",
        )
    if model_type in ("internlm2", "internlm3") and not archs:
        return model_type
    if model_type and model_type in _native_model_types():
        return "hf_chat_template"
    raise StudioError(
        f"{where}: cannot tell the model family from config.json "
        f"(architectures={archs or 'missing'}, model_type={model_type or 'missing'}).",
        f"Set `family:` explicitly in the config (known: {_known_families()}).",
    )


def resolve_family(name: str, model_dir: Path | None) -> ModelFamily:
    """The family `name`, or for "auto" the one config.json in `model_dir` points to."""
    from studio.families import FAMILIES

    if name != "auto":
        return FAMILIES.get(name)()
    config = _read_config(Path(model_dir)) if model_dir is not None else None
    # No config.json (a GGUF file): transformers builds the model from the GGUF metadata and
    # the tokenizer carries the chat template, so the generic family applies.
    family = "hf_chat_template" if config is None else _guess(config, Path(model_dir) / "config.json")
    return FAMILIES.get(family)()
