"""The folder lmdeploy loads for an official InternLM2-family checkpoint: an overlay in the studio's cache.

lmdeploy reads a checkpoint through transformers, and two things in the official folders break under
transformers 5:
- the tokenizer (remote code that renumbers the chat tokens; see lmdeploy_tokenizer);
- InternVL's configuration class, which cannot be built without arguments (its default `llm_config`
  names no architecture and raises). transformers 5.x up to at least 5.17 builds such a default
  instance whenever it logs a loaded configuration, so lmdeploy fell back to a plain configuration
  whose `llm_config` is a dict, and its engine process died ("'dict' object has no attribute
  'hidden_size'").

The overlay links every file of the checkpoint and replaces only what needs it: a converted tokenizer,
and for configurations with sub-configurations a small subclass of the checkpoint's own class,
marked `has_no_defaults_at_init` (transformers' switch for exactly such classes), named in the
overlay's config.json. The checkpoint folder is never written to.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Optional

from studio.engines.lmdeploy_tokenizer import needs_tokenizer, read_json, write_fast_tokenizer

TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja"}
SHIM = "puyu_config_shim"
MARKER = ".puyu-overlay.json"


def config_class_ref(model_dir: Path) -> Optional[tuple[str, str]]:
    """(module, class) of a remote configuration class with sub-configurations, which needs the shim."""
    cfg = read_json(model_dir / "config.json")
    ref = (cfg.get("auto_map") or {}).get("AutoConfig")
    if not isinstance(ref, str) or "--" in ref or ref.count(".") != 1 or "llm_config" not in cfg:
        return None
    module, cls = ref.split(".")
    if not (module.isidentifier() and cls.isidentifier() and (model_dir / f"{module}.py").is_file()):
        return None
    return module, cls


def needs_overlay(model_dir: Path) -> bool:
    """True when lmdeploy should load the checkpoint through an overlay."""
    return needs_tokenizer(model_dir) or config_class_ref(model_dir) is not None


def _write_config_shim(model_dir: Path, out: Path, module: str, cls: str) -> None:
    (out / f"{SHIM}.py").write_text(
        '"""Written by Puyu Studio into its lmdeploy overlay; the checkpoint is unchanged.\n\n'
        "The checkpoint's configuration class cannot be built without arguments; transformers builds one\n"
        'when it logs a configuration unless the class says it has no defaults at init."""\n'
        f"from .{module} import {cls} as _CheckpointConfig\n\n\n"
        f"class {cls}(_CheckpointConfig):\n"
        "    has_no_defaults_at_init = True\n\n"
        "    def __init__(self, *args, **kwargs):  # defined, so transformers keeps the checkpoint's own __init__\n"
        "        super().__init__(*args, **kwargs)\n", encoding="utf-8")
    config = read_json(model_dir / "config.json")
    config["auto_map"] = {**config["auto_map"], "AutoConfig": f"{SHIM}.{cls}"}
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def overlay_for(model_dir: Path, cache_dir: Path) -> Path:
    """The overlay folder for `model_dir` (made once per checkpoint and version of the files it replaces)."""
    model_dir = model_dir.resolve()
    watched = TOKENIZER_FILES | {"tokenizer.model", "config.json"}
    stamp = [str(model_dir)] + [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                                for p in sorted(model_dir.iterdir()) if p.name in watched]
    key = hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:16]
    out = cache_dir / "lmdeploy-tokenizer" / f"{model_dir.name}-{key}"
    if (out / MARKER).is_file():
        return out
    tokenizer, shim = needs_tokenizer(model_dir), config_class_ref(model_dir)
    replaced = (TOKENIZER_FILES if tokenizer else set()) | ({"config.json", f"{SHIM}.py"} if shim else set())
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for entry in model_dir.iterdir():
        if entry.name not in replaced:
            (tmp / entry.name).symlink_to(entry)
    if tokenizer:
        write_fast_tokenizer(model_dir, tmp)
    if shim:
        _write_config_shim(model_dir, tmp, *shim)
    (tmp / MARKER).write_text(json.dumps({"source": str(model_dir)}), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
