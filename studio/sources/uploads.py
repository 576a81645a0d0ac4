"""The user's own pictures for one article, each placed at most once (as XComposer2's demo does)."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from studio.core.article import Candidate
from studio.errors import InputError
from studio.images import load_image
from studio.sources.base import TextEmbedder, blend_scores, has_cjk, humanise, plural, require_caption

# Words that camera apps, phones and chat apps put into file names: they say nothing about the picture.
_NOISE_WORDS = {"img", "dsc", "dscn", "dcim", "pxl", "image", "images", "photo", "photos", "pic", "picture",
                "screenshot", "screen", "shot", "wechat", "mmexport", "tmp", "temp", "untitled", "copy",
                "edited", "scaled", "final", "upload", "file", "download", "whatsapp", "signal", "jpeg", "jpg"}


def describes_picture(stem: str) -> bool:
    """Whether a file name carries words about its picture ("red boat" yes, "IMG_2041" no)."""
    if has_cjk(stem):
        return True
    words = re.findall(r"[A-Za-z]+", stem.replace("_", " "))
    return any(len(w) >= 3 and w.lower() not in _NOISE_WORDS for w in words)


class UploadSource:
    """Candidates from this article's uploads: those not yet used, most fitting first.

    Uploads are ranked by similarity between the caption and their own caption or file name when an
    embedder is given and they have one that means something; otherwise they come in upload order
    (score 0), so the first unused upload goes to the next position."""

    def __init__(self, paths: Sequence[str | Path], embedder: Optional[TextEmbedder] = None,
                 captions: Optional[Mapping[str, str]] = None, name: str = "upload") -> None:
        self.name = name
        self.embedder = embedder
        self._items: list[tuple[str, str, str]] = []  # (path, label shown, text matched or "")
        self._problems: list[str] = []
        captions = captions or {}
        for raw in paths:
            path = os.path.normpath(os.path.abspath(os.fspath(raw)))
            try:
                load_image(path)
            except InputError as exc:
                self._problems.append(f"{self.name}: skipped {Path(path).name}: {exc.message}")
                continue
            given = " ".join(str(captions.get(os.fspath(raw)) or captions.get(path) or "").split())
            stem = Path(path).stem
            text = given or (humanise(stem) if describes_picture(stem) else "")
            self._items.append((path, given or Path(path).name, text))
        self._vectors: Optional[np.ndarray] = None
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def paths(self) -> list[str]:
        """The accepted uploads, in upload order."""
        return [p for p, _, _ in self._items]

    def search(self, caption: str, k: int, exclude: set[str]) -> list[Candidate]:
        """Up to k uploads not in `exclude`, by caption similarity when possible, else in upload order."""
        query = require_caption(caption)
        self._local.warnings = list(self._problems)
        skip = {os.path.normpath(p) for p in exclude}
        scores = self._scores(query)
        ranked = sorted((i for i, (p, _, _) in enumerate(self._items) if p not in skip),
                        key=lambda i: -scores[i])  # sorted() is stable: ties keep upload order
        return [Candidate(self._items[i][0], "upload", float(scores[i]), self._items[i][1])
                for i in ranked[:max(k, 0)]]

    def status(self) -> str:
        """"upload: 3 images (1 broken file skipped)"."""
        line = f"{self.name}: {plural(len(self._items), 'image')}"
        return line + (f" ({plural(len(self._problems), 'broken file')} skipped)" if self._problems else "")

    def last_warnings(self) -> list[str]:
        """Uploads that were skipped as broken (reported with each search)."""
        return list(getattr(self._local, "warnings", self._problems))

    def _scores(self, query: str) -> np.ndarray:
        scores = np.zeros(len(self._items), dtype=np.float32)
        labelled = [i for i, (_, _, text) in enumerate(self._items) if text]
        if self.embedder is None or not labelled:
            return scores
        texts = [self._items[i][2] for i in labelled]
        with self._lock:
            if self._vectors is None:
                self._vectors = np.asarray(self.embedder.encode(texts), dtype=np.float32)
            vectors = self._vectors
        semantic = vectors @ self.embedder.encode([query])[0]
        scores[labelled] = blend_scores(query, semantic, texts)
        return scores
