"""What an image source is, and the small text and file helpers the sources share."""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from studio.core.article import Candidate
from studio.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
MAX_CAPTION_CHARS = 500  # queries and sidecar lines are cut here: captions are a sentence, not an essay

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@runtime_checkable
class ImageSource(Protocol):
    """Finds candidate pictures for one caption."""

    name: str

    def search(self, caption: str, k: int, exclude: set[str]) -> list[Candidate]:
        """Up to k candidates, best first, none whose path (or URL) is in `exclude`."""
        ...

    def status(self) -> str:
        """One human line saying what the source holds, e.g. "gallery: 15 images"."""
        ...

    def last_warnings(self) -> list[str]:
        """What went wrong during this thread's last search (empty when nothing did)."""
        ...


@runtime_checkable
class TextEmbedder(Protocol):
    """Turns texts into unit-length vectors; `model_id` changes when the vectors would."""

    model_id: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """An (n, d) float32 array of L2-normalised rows."""
        ...


def require_caption(caption: str) -> str:
    """The caption stripped and cut to length, or InputError when there is nothing to search for."""
    text = " ".join(str(caption or "").split())
    if not text:
        raise InputError("The image caption is empty, so there is nothing to search for.",
                         "Write a few words describing the picture you want.")
    return text[:MAX_CAPTION_CHARS]


def humanise(stem: str) -> str:
    """A file stem as words: "red_boat-2" → "red boat 2"."""
    return " ".join(re.sub(r"[_\-.+]+", " ", stem).split())


def has_cjk(text: str) -> bool:
    """Whether the text holds Chinese characters."""
    return bool(_CJK.search(text))


def cjk_grams(text: str) -> set[str]:
    """Chinese characters and character pairs of a text (other characters break the runs)."""
    grams: set[str] = set()
    for run in re.findall(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+", text):
        grams.update(run)
        grams.update(run[i:i + 2] for i in range(len(run) - 1))
    return grams


def cjk_scores(query: str, texts: Sequence[str]) -> np.ndarray:
    """TF-IDF cosine of Chinese character uni/bigrams between the query and each text (0 when none).

    The packaged MiniLM model is English-only: most Chinese characters are [UNK] in its vocabulary,
    so Chinese captions get near-identical vectors. Character overlap, weighted so that common
    characters (的, 一) count little, is what tells Chinese captions apart."""
    q = cjk_grams(query)
    docs = [cjk_grams(t) for t in texts]
    if not q or not docs:
        return np.zeros(len(docs), dtype=np.float32)
    df = Counter(g for d in docs for g in d)
    idf = {g: math.log((1 + len(docs)) / (1 + df.get(g, 0))) + 1.0 for g in q | set(df)}
    q_norm = math.sqrt(sum(idf[g] ** 2 for g in q))
    out = np.zeros(len(docs), dtype=np.float32)
    for i, d in enumerate(docs):
        if d:
            shared = sum(idf[g] ** 2 for g in q & d)
            out[i] = shared / (q_norm * math.sqrt(sum(idf[g] ** 2 for g in d)))
    return out


def blend_scores(query: str, semantic: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Per-text relevance: the embedding cosine, mixed with character overlap for Chinese queries."""
    if not has_cjk(query):
        return semantic
    # Chinese-vs-Chinese cosines from an English model sit high whatever the meaning; lean on overlap.
    return 0.25 * semantic + 0.75 * cjk_scores(query, texts)


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plural(n: int, word: str) -> str:
    """"1 image", "2 images"."""
    return f"{n} {word}" + ("" if n == 1 else "s")
