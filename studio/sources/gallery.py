"""A local folder of pictures with captions, searched by caption similarity; its index is cached on disk."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image

from studio.core.article import Candidate
from studio.errors import InputError, StudioError
from studio.images import image_digest, load_image
from studio.sources.base import (IMAGE_SUFFIXES, MAX_CAPTION_CHARS, TextEmbedder, atomic_write, blend_scores,
                                 humanise, plural, require_caption)

log = logging.getLogger(__name__)

INDEX_VERSION = 1  # bump when the cache layout or what goes into the vectors changes
MAX_SIDECAR_BYTES = 64 * 1024
MAX_CAPTION_LINES = 4  # typically one English and one Chinese line

Captioner = Callable[[Image.Image], str]


@dataclass
class _Entry:
    name: str
    texts: list[str]  # each line is embedded on its own; a query matches the best line

    @property
    def label(self) -> str:
        return " / ".join(self.texts)


@dataclass
class _State:
    signature: str
    missing: bool = False
    entries: list[_Entry] = field(default_factory=list)
    broken: int = 0
    vectors: Optional[np.ndarray] = None  # (lines, d), rows in entry order
    owners: Optional[np.ndarray] = None  # entry index of each row


class Gallery:
    """Pictures in `folder`, captioned by `<name>.txt` sidecars, a captioner, or their file names."""

    def __init__(self, folder: Path, cache_dir: Path, embedder: TextEmbedder,
                 captioner: Optional[Captioner] = None, name: str = "gallery") -> None:
        self.name = name
        self.folder = Path(os.path.normpath(Path(folder).expanduser().absolute()))
        self.cache_dir = Path(cache_dir)
        self.embedder = embedder
        self.captioner = captioner
        key = hashlib.sha256(str(self.folder).encode()).hexdigest()[:16]
        self._cache_file = self.cache_dir / f"gallery-{key}.npz"
        self._state: Optional[_State] = None
        self._lock = threading.Lock()  # one rebuild at a time; searches share the result
        self._local = threading.local()  # warnings of this thread's last call

    def search(self, caption: str, k: int, exclude: set[str]) -> list[Candidate]:
        """The k pictures whose captions are closest to `caption`, best first, skipping `exclude`."""
        query = require_caption(caption)
        self._local.warnings = []
        state = self._refresh(with_vectors=True)
        if k <= 0 or not state.entries:
            return []
        texts = [t for e in state.entries for t in e.texts]
        semantic = state.vectors @ self.embedder.encode([query])[0]
        per_line = blend_scores(query, semantic, texts)
        best = np.full(len(state.entries), -np.inf, dtype=np.float32)
        np.maximum.at(best, state.owners, per_line)
        skip = {os.path.normpath(p) for p in exclude}
        found: list[Candidate] = []
        for i in np.argsort(-best, kind="stable"):
            path = str(self.folder / state.entries[i].name)
            if path in skip:
                continue
            found.append(Candidate(path, "gallery", float(best[i]), state.entries[i].label))
            if len(found) == k:
                break
        return found

    def status(self) -> str:
        """"gallery: 15 images (2 broken files skipped)", or why there are none."""
        self._local.warnings = []
        try:
            state = self._refresh(with_vectors=False)
        except OSError as exc:
            return f"{self.name}: folder {self.folder} cannot be read ({exc.strerror or exc})"
        if state.missing:
            return f"{self.name}: folder {self.folder} does not exist"
        skipped = f"{plural(state.broken, 'broken file')} skipped"
        if not state.entries:
            if state.broken:
                return f"{self.name} folder {self.folder} has no usable images ({skipped})"
            return f"{self.name} folder {self.folder} has no images"
        return f"{self.name}: {plural(len(state.entries), 'image')}" + (f" ({skipped})" if state.broken else "")

    def last_warnings(self) -> list[str]:
        """Problems met during this thread's last search or status (rebuild notes, cache trouble)."""
        return list(getattr(self._local, "warnings", []))

    # --- index ------------------------------------------------------------------------------------

    def _warn(self, message: str) -> None:
        log.warning("%s", message)
        self._local.warnings.append(message)

    def _refresh(self, with_vectors: bool) -> _State:
        with self._lock:
            files = self._listing()
            signature = self._signature(files)
            if self._state is None or self._state.signature != signature:
                self._state = (_State(signature, missing=True) if files is None
                               else self._read_cache(signature) or self._catalogue(files, signature))
            state = self._state
            if with_vectors and state.vectors is None and state.entries:
                texts = [t for e in state.entries for t in e.texts]
                state.vectors = np.asarray(self.embedder.encode(texts), dtype=np.float32)
                state.owners = np.array([i for i, e in enumerate(state.entries) for _ in e.texts], dtype=np.int32)
                self._write_cache(state)
            return state

    def _listing(self) -> Optional[list[tuple[Path, os.stat_result, Optional[list[str]]]]]:
        if not self.folder.is_dir():
            return None
        found = []
        for path in sorted(self.folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file():
                found.append((path, path.stat(), self._sidecar(path)))
        return found

    def _sidecar(self, image: Path) -> Optional[list[str]]:
        path = image.with_suffix(".txt")
        try:
            if not path.is_file():
                return None
            with open(path, "rb") as fh:
                text = fh.read(MAX_SIDECAR_BYTES).decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            self._warn(f"{self.name}: caption file {path.name} could not be read as UTF-8 text ({exc}); "
                       "using another caption")
            return None
        lines = [" ".join(line.split())[:MAX_CAPTION_CHARS] for line in text.splitlines()]
        return [line for line in lines if line][:MAX_CAPTION_LINES] or None

    def _signature(self, files) -> str:
        try:
            model = self.embedder.model_id
        except StudioError:  # model not installed: status still works, search says why
            model = "unavailable"
        listing = None if files is None else [(p.name, st.st_size, st.st_mtime_ns, side) for p, st, side in files]
        blob = json.dumps([INDEX_VERSION, model, self.captioner is not None, listing], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _catalogue(self, files, signature: str) -> _State:
        state = _State(signature)
        for path, _, sidecar in files:
            try:
                intake = load_image(path)
            except InputError as exc:
                state.broken += 1
                self._warn(f"{self.name}: skipped {path.name}: {exc.message}")
                continue
            texts = sidecar or self._machine_caption(path, intake.image) or [humanise(path.stem) or path.stem]
            state.entries.append(_Entry(path.name, texts))
        return state

    def _machine_caption(self, path: Path, image: Image.Image) -> Optional[list[str]]:
        if self.captioner is None:
            return None
        cached = self.cache_dir / "captions" / f"{image_digest(image)}.txt"
        try:
            text = cached.read_text(encoding="utf-8").strip()
            if text:
                return [text]
        except (OSError, UnicodeDecodeError):
            pass
        try:
            text = " ".join(str(self.captioner(image) or "").split())[:MAX_CAPTION_CHARS]
        except Exception as exc:  # a vision model failing must not take the gallery down
            self._warn(f"{self.name}: the captioner failed on {path.name} ({exc}); using its file name")
            return None
        if not text:
            return None
        try:
            atomic_write(cached, text.encode("utf-8"))
        except OSError as exc:
            self._warn(f"{self.name}: could not cache the caption of {path.name} ({exc.strerror or exc})")
        return [text]

    def _read_cache(self, signature: str) -> Optional[_State]:
        if not self._cache_file.exists():
            return None
        try:
            with np.load(self._cache_file, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("signature") != signature:
                    return None
                vectors = np.asarray(data["vectors"], dtype=np.float32)
                owners = np.asarray(data["owners"], dtype=np.int32)
            entries = [_Entry(str(e["name"]), [str(t) for t in e["texts"]]) for e in meta["entries"]]
            rows = sum(len(e.texts) for e in entries)
            if vectors.ndim != 2 or len(vectors) != rows or owners.shape != (rows,):
                raise ValueError(f"{len(vectors)} vectors for {rows} captions")
            return _State(signature, entries=entries, broken=int(meta["broken"]), vectors=vectors, owners=owners)
        except Exception as exc:  # damaged, truncated or foreign file: rebuilding is always possible
            self._warn(f"{self.name}: index cache {self._cache_file.name} is unreadable ({exc}); rebuilding it")
            return None

    def _write_cache(self, state: _State) -> None:
        meta = {"signature": state.signature, "folder": str(self.folder), "broken": state.broken,
                "entries": [{"name": e.name, "texts": e.texts} for e in state.entries]}
        buf = io.BytesIO()
        np.savez(buf, vectors=state.vectors, owners=state.owners, meta=np.array(json.dumps(meta, ensure_ascii=False)))
        try:
            atomic_write(self._cache_file, buf.getvalue())
        except OSError as exc:  # read-only or full disk: the index still works from memory
            self._warn(f"{self.name}: could not write the index cache in {self.cache_dir} ({exc.strerror or exc})")
