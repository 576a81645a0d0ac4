"""App-scoped services built once at start: config, the engine pool and the store."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Optional

from studio.config import StudioConfig
from studio.core.types import EngineInfo
from studio.engines import ENGINES
from studio.engines.base import Engine, LoadContext, Placement
from studio.errors import ModelNotReady, StudioError
from studio.hub.download import Downloads
from studio.hub.download_settings import dest_root
from studio.store.conversations import ConversationStore
from studio.store.draft_files import DraftFiles
from studio.store.drafts import DraftStore
from studio.store.presets import PresetStore
from studio.store.private_files import PrivateFiles
from studio.tools.pool import ToolPool

log = logging.getLogger(__name__)

State = Literal["idle", "loading", "ready", "failed"]


@dataclass(frozen=True)
class LoadState:
    """A snapshot of one engine's loading progress."""

    state: State = "idle"
    progress: float = 0.0
    text: str = ""
    error: str = ""
    info: Optional[EngineInfo] = None
    seconds: float = 0.0  # how long the load took, once it is ready or has failed


@dataclass
class _Slot:
    state: LoadState = field(default_factory=LoadState)
    engine: Optional[Engine] = None
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class EnginePool:
    """Loads each configured engine once, in the background, and hands it out when ready."""

    def __init__(self, config: StudioConfig, num_gpus: int, cache_dir: Path) -> None:
        self._config = config
        self._num_gpus = num_gpus
        self._cache_dir = cache_dir
        self._slots = {name: _Slot() for name in config.engines}

    def names(self) -> list[str]:
        """Configured engine names."""
        return list(self._slots)

    def label(self, name: str) -> str:
        """The display name of an engine's model."""
        return self._config.engines[name].display_name() or name

    def start(self, name: Optional[str] = None) -> None:
        """Begin loading one engine (or all) in background threads; idempotent."""
        for n in [name] if name else self.names():
            slot = self._slots[n]
            with slot.lock:
                if slot.state.state != "idle":
                    continue
                slot.state = LoadState("loading", 0.0, "starting")
            threading.Thread(target=self._load, args=(n,), name=f"load-{n}", daemon=True).start()

    def _set(self, name: str, **changes) -> None:
        slot = self._slots[name]
        with slot.lock:
            slot.state = replace(slot.state, **changes)

    def _load(self, name: str) -> None:
        cfg = self._config.engines[name]
        ctx = LoadContext(
            name=name,
            # Engines that run elsewhere (a remote server) have no device setting.
            placement=Placement(device=getattr(cfg, "device", "auto"), num_gpus=self._num_gpus),
            cache_dir=self._cache_dir,
            progress=lambda frac, text: self._set(name, progress=max(0.0, min(1.0, frac)), text=text),
        )
        started = time.monotonic()
        try:
            engine = ENGINES.get(cfg.engine).load(cfg, ctx)
        except StudioError as exc:
            self._set(name, state="failed", error=str(exc), seconds=time.monotonic() - started)
        except Exception as exc:  # a loader bug or a broken checkpoint: keep serving, say why
            log.exception("loading engine %s failed", name)
            self._set(name, state="failed", error=f"{type(exc).__name__}: {exc}", seconds=time.monotonic() - started)
        else:
            self._slots[name].engine = engine
            self._set(name, state="ready", progress=1.0, text="ready", info=engine.info(),
                      seconds=time.monotonic() - started)
        finally:
            self._slots[name].done.set()

    def state(self, name: str) -> LoadState:
        """The current loading state of `name`."""
        return self._slots[name].state

    def wait(self, name: str, timeout: float) -> LoadState:
        """Block up to `timeout` seconds for `name` to finish loading; returns its state."""
        self.start(name)
        self._slots[name].done.wait(timeout)
        return self.state(name)

    def get(self, name: str) -> Engine:
        """The loaded engine, or ModelNotReady saying how far loading is."""
        slot = self._slots[name]
        st = slot.state
        if st.state == "ready" and slot.engine is not None:
            return slot.engine
        if st.state == "failed":
            raise ModelNotReady(f"The model failed to load: {st.error}", "Fix the config or model path and restart the studio.")
        raise ModelNotReady(
            f"The model is still loading ({st.progress:.0%}, {st.text}).", "Send again in a moment."
        )

    def concurrency(self, name: str) -> int:
        """How many requests the UI may run on engine `name` at once: what its options say (max_batch_size
        for engines that batch: lmdeploy, remote servers, and the transformers engine, which decodes the
        requests of Llama-architecture models together; 1 where a config says max_batch_size: 1).

        Asked of the config, not the loaded engine: listeners are wired before anything loads."""
        return self._config.engines[name].concurrency()

    def config_of(self, name: str):
        """The engine config `name` runs with now (after any switch)."""
        return self._config.engines[name]

    def unload(self, name: str) -> None:
        """Free one engine's model; it loads again on the next request or `start`."""
        slot = self._slots[name]
        with slot.lock:
            if slot.state.state == "loading":
                raise ModelNotReady(f"{name} is still loading.", "Unload it once loading has finished.")
            engine, slot.engine = slot.engine, None
            slot.state = LoadState("idle")
            slot.done.clear()
        if engine is not None:
            engine.close()

    def switch(self, name: str, model_path: str, family: Optional[str] = None) -> None:
        """Point engine `name` at another model folder (checked first), unload the old one, load the new;
        `family` replaces the configured one (e.g. "auto": read it from the new folder's config.json)."""
        from studio.engines import preflight

        current = self._config.engines[name]
        if "model_path" not in type(current).model_fields:
            raise StudioError(f"{name} runs on engine {current.engine}, which has no model folder to switch.",
                              "Change the server in the config file instead.")
        # What the config said about the old model (its languages, speed, article settings) is not about the new one.
        update = {"model_path": model_path.strip(), "label": None, "languages": None, "tokens_per_s": None,
                  "article": type(current).model_fields["article"].default}
        if family is not None:
            update["family"] = family
        if "gguf_file" in type(current).model_fields:
            update["gguf_file"] = None
        cfg = current.model_copy(update=update)
        preflight(cfg, self._num_gpus)  # a wrong path or a model that cannot fit is refused before unloading
        self.unload(name)
        engines = dict(self._config.engines)
        engines[name] = cfg
        self._config = self._config.model_copy(update={"engines": engines})
        self.start(name)

    def close(self) -> None:
        """Free every loaded engine."""
        for slot in self._slots.values():
            if slot.engine is not None:
                slot.engine.close()
                slot.engine = None
                slot.state = LoadState("idle")
                slot.done.clear()


class SourcePool:
    """The configured article image sources, built on first use (the embedding model takes seconds to load)."""

    def __init__(self, config: StudioConfig, cache_dir: Path) -> None:
        self._config = config
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        self._sources: Optional[list] = None

    def get(self) -> list:
        """The sources, in config order."""
        with self._lock:
            if self._sources is None:
                from studio.sources import build_sources
                from studio.sources.embedder import Embedder

                self._sources = build_sources(self._config.article, self._cache_dir, Embedder())
            return self._sources


@dataclass
class Services:
    """Everything the UI, API and CLI share for the life of the process."""

    config: StudioConfig
    engines: EnginePool
    store: ConversationStore
    data_dir: Path
    drafts: Optional[DraftStore] = None
    draft_files: Optional[DraftFiles] = None
    sources: Optional[SourcePool] = None
    files: Optional[PrivateFiles] = None  # thumbnails and downloads: private folders under the data dir
    tools: Optional[ToolPool] = None  # the agent's tools: one sandboxed interpreter per conversation
    agent_store: Optional[ConversationStore] = None  # the agent tab's conversations (apart from the chat list)
    presets: Optional[PresetStore] = None  # each user's saved system prompts
    downloads: Optional[Downloads] = None  # model downloads the user asked for (resumed at start)

    def device_stats(self) -> list:
        """Live memory of each GPU and of RAM (studio.engines.devices.DeviceStat)."""
        from studio.engines.devices import device_stats

        return device_stats()

    def image_sources(self) -> list:
        """The article image sources (gallery, HTTP search) from the config."""
        return self.sources.get() if self.sources else []

    def close(self) -> None:
        """Release models and stop the agent's interpreters; the stores need no closing."""
        if self.tools is not None:
            self.tools.close()
        if self.downloads is not None:
            self.downloads.close()  # stopped, not cancelled: the next start resumes them
        self.engines.close()


def build_services(config: StudioConfig, data_dir: Path, num_gpus: int = 1,
                   cache_dir: Optional[Path] = None) -> Services:
    """Create the data directory layout and the services over it (models load later)."""
    data_dir = Path(data_dir).expanduser().resolve()
    cache_dir = Path(cache_dir) if cache_dir else data_dir / "cache"
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # the cache may live elsewhere (PUYU_CACHE_DIR)
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudioError(f"Cannot create the data directory {data_dir}: {exc}", "Pass a writable --data-dir.") from None
    services = Services(
        config=config,
        engines=EnginePool(config, num_gpus, cache_dir),
        store=ConversationStore(data_dir / "studio.db"),
        data_dir=data_dir,
        drafts=DraftStore(data_dir / "drafts.db"),
        draft_files=DraftFiles(data_dir / "drafts"),
        sources=SourcePool(config, cache_dir / "sources"),
        files=PrivateFiles(data_dir),
        tools=build_tool_pool(config, data_dir),
        agent_store=ConversationStore(data_dir / "agent.db"),
        presets=PresetStore(data_dir / "presets.db"),
        downloads=build_downloads(config, data_dir),
    )
    sweep_draft_folders(services.drafts, services.draft_files)
    return services


def build_downloads(config: StudioConfig, data_dir: Path) -> Downloads:
    """The download jobs, recorded in a private folder under the data dir."""
    from studio.store.private_files import private_dir

    return Downloads(private_dir(data_dir, "downloads"), config.downloads, dest_root(config.downloads, data_dir))


def build_tool_pool(config: StudioConfig, data_dir: Path) -> ToolPool:
    """The agent's tools from the config; a broken tool file stops the start with its path and line."""
    from studio.tools.user_tools import load_tool_folder

    agent = config.agent
    files = load_tool_folder(agent.tools_folder) if agent.tools_folder else []
    return ToolPool(data_dir / "agent", files, agent.arxiv_url if agent.arxiv else None, agent.interpreter_timeout_s)


def sweep_draft_folders(drafts: DraftStore, files: DraftFiles) -> int:
    """Remove article image folders left without a draft (e.g. by a crash); how many went."""
    if not files.root.is_dir():
        return 0  # nothing written yet; do not create the draft store just to look
    try:
        rows = drafts.keys()
    except StudioError as exc:  # an unreadable store must never cost the user their pictures
        log.warning("Not tidying %s: %s", files.root, exc)
        return 0
    removed = files.sweep(rows)
    if removed:
        log.info("Removed %d article image folder(s) with no draft from %s", removed, files.root)
    return removed
