"""The homework bundle's record: what a learner hands in to show how a result was reproduced — the
transcript (or article), the model, engine, device and versions, the config and the sampling settings."""

from __future__ import annotations

import platform
import re
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Mapping, Optional

import studio
from studio.core.article import ArticleDraft
from studio.core.session import ChatSession
from studio.errors import StudioError
from studio.exports.article_images import ExportResult
from studio.exports.homework import FORMAT, VERSION, article_bundle, conversation_bundle
from studio.services import Services

NOT_INSTALLED = "not installed"
PACKAGES = ("torch", "transformers", "lmdeploy", "gradio")
# Option names that hold credentials (an API key, a server's auth header); "max_new_tokens" is no secret.
_SECRET = re.compile(r"(^|_)(api_?key|keys?|secret|password|passwd|auth|authorization|token|credentials?|"
                     r"headers?|cookies?)$", re.IGNORECASE)
_USERINFO = re.compile(r"(^|//)[^/@]+@")
BACKENDS = {"hf": "transformers", "openai_compat": "remote OpenAI-compatible server"}


def versions() -> dict[str, str]:
    """The studio's, Python's and the model stack's versions ("not installed" for a missing package)."""
    out = {"puyu-studio": studio.__version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = NOT_INSTALLED
    return out


def _strip_userinfo(value: str) -> str:
    """A URL or host without the `user:password@` some servers take in it; other text as it is."""
    if "@" not in value or any(ch.isspace() for ch in value):
        return value
    return _USERINFO.sub(r"\1", value)


def without_secrets(value: Any) -> Any:
    """`value` (JSON-ready) with every credential-named key left out and passwords cut from URLs."""
    if isinstance(value, Mapping):
        return {k: without_secrets(v) for k, v in value.items() if not _SECRET.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [without_secrets(v) for v in value]
    return _strip_userinfo(value) if isinstance(value, str) else value


def public_config(options: Any) -> dict:
    """An engine's options as loaded, as JSON, without secrets (fields hidden from repr, credential names)."""
    hidden = {name for name, f in type(options).model_fields.items() if not f.repr}
    data = {k: v for k, v in options.model_dump(mode="json").items() if k not in hidden}
    return without_secrets(data)


def _model_folder(cfg: Any) -> Optional[str]:
    """The folder the model is read from ("pkg:" names resolved), None for a remote server."""
    path = getattr(cfg, "model_path", None)
    if not path:
        return None
    if cfg.engine == "hf" or path.startswith("pkg:"):
        from studio.engines.hf_loading import resolve_model_files

        try:
            return str(resolve_model_files(path, getattr(cfg, "gguf_file", None)).model_dir)
        except StudioError:
            return path  # moved or deleted since: say what the config names
    return path


def _backend(cfg: Any, extra: Mapping) -> str:
    """What runs the engine: transformers, lmdeploy's TurboMind or PyTorch backend, or a server."""
    if cfg.engine == "lmdeploy":
        return f"lmdeploy {extra.get('backend') or getattr(cfg, 'backend', 'auto')}"
    return BACKENDS.get(cfg.engine, cfg.engine)


def environment(services: Services, engine: str) -> dict:
    """Model, engine, device, GPU and versions for `engine` as it runs now (or as configured, if not loaded)."""
    from studio.engines.devices import gpu_names

    pool = services.engines
    cfg, state = pool.config_of(engine), pool.state(engine)
    info = state.info if state.state == "ready" else None
    extra = info.extra if info else {}
    device = info.device if info else getattr(cfg, "device", "remote")
    gpus = gpu_names()
    return {
        "model": {"name": _strip_userinfo(pool.label(engine)), "folder": _model_folder(cfg), "file": getattr(cfg, "gguf_file", None),
                  "family": info.family if info else cfg.family},
        "engine": {"name": engine, "engine": cfg.engine, "backend": _backend(cfg, extra), "state": state.state,
                   "dtype": info.dtype if info else getattr(cfg, "dtype", None),
                   "context_window": info.context_window if info else cfg.context_window},
        "device": {"device": device, "gpu": gpus[0] if gpus and str(device).startswith("cuda") else None,
                   # None: not known here (torch not loaded, e.g. a remote engine); []: torch sees no GPU
                   "gpus": gpus, "platform": platform.platform()},
        "versions": versions(),
        "config": public_config(cfg),
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _stats(meta: Optional[dict]) -> Optional[dict]:
    """A reply's timing as the chat stored it (meta["stats"]), None when it has none."""
    stats = (meta or {}).get("stats")
    return dict(stats) if isinstance(stats, Mapping) else None


def conversation_record(services: Services, session: ChatSession) -> dict:
    """The JSON record of a conversation: environment, sampling, and each message with its reply timing."""
    transcript = []
    for m in session.messages:
        item = {"role": m.role, "content": m.text, "partial": m.partial}
        if m.role == "assistant":
            item["stats"] = _stats(m.meta)
        transcript.append(item)
    return {"format": FORMAT, "version": VERSION, "kind": "conversation", "exported_at": _now(),
            "title": session.display_title(), **environment(services, session.engine),
            "sampling": session.params.model_dump(mode="json"), "system_prompt": session.system_prompt,
            "transcript": transcript}


def article_record(services: Services, draft: ArticleDraft) -> dict:
    """The JSON record of an article: environment, the settings it was written with, its text and pictures."""
    blocks = [{"text": b.text, "image": None if b.image is None else
               {"caption": b.image.caption, "source": b.image.source}} for b in draft.blocks]
    env = environment(services, draft.engine)
    if draft.model:
        env["model"]["written_by"] = draft.model  # the label when it was written (the model may have changed)
    return {"format": FORMAT, "version": VERSION, "kind": "article", "exported_at": _now(),
            "title": draft.title or draft.instruction, **env, "sampling": draft.params.model_dump(mode="json"),
            "article": {"instruction": draft.instruction, "material": draft.material, "status": draft.status,
                        "blocks": blocks}}


def conversation_homework(services: Services, session: ChatSession, labels: Mapping[str, str],
                          lang: str = "en") -> ExportResult:
    """The homework bundle (zip: HTML page + JSON record) of a conversation; `labels` are the page's words."""
    return conversation_bundle(conversation_record(services, session), labels, lang)


def article_homework(services: Services, draft: ArticleDraft, labels: Mapping[str, str],
                     lang: str = "en") -> ExportResult:
    """The homework bundle of an article, its pictures inlined in the page."""
    return article_bundle(draft, article_record(services, draft), labels, lang)
