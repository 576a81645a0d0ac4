"""Article image sources: the local gallery, an optional HTTP image search, and per-article uploads.

Sources are registered by kind (the `kind` of an `article.sources` entry in the config); uploads are
not configured: the article task makes an `UploadSource` for each article's own pictures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from studio.config import DEFAULT_GALLERY, ArticleConfig, ArticleSourceConfig
from studio.registry import Registry
from studio.sources.base import ImageSource, TextEmbedder
from studio.sources.embedder import Embedder
from studio.sources.gallery import Gallery
from studio.sources.http_search import HttpImageSearch
from studio.sources.uploads import UploadSource

SourceFactory = Callable[[ArticleSourceConfig, Path, TextEmbedder], ImageSource]

IMAGE_SOURCES: Registry[SourceFactory] = Registry("image source")


@IMAGE_SOURCES.register("gallery")
def _gallery(cfg: ArticleSourceConfig, cache_dir: Path, embedder: TextEmbedder) -> ImageSource:
    folder = Path(cfg.folder).expanduser() if cfg.folder else DEFAULT_GALLERY
    return Gallery(folder, cache_dir, embedder, name=cfg.source_name)


@IMAGE_SOURCES.register("http")
def _http(cfg: ArticleSourceConfig, cache_dir: Path, embedder: TextEmbedder) -> ImageSource:
    return HttpImageSearch(cfg.url_template or "", cache_dir, timeout_s=cfg.timeout_s, max_bytes=cfg.max_bytes,
                           max_results=cfg.max_results, headers=cfg.headers, name=cfg.source_name)


def build_sources(config: ArticleConfig, cache_dir: Path,
                  embedder: Optional[TextEmbedder] = None) -> list[ImageSource]:
    """The configured sources in config order, each caching under `cache_dir/<kind>-<name>`.

    One embedder is shared by all of them (a lazily loading `Embedder` when none is given), so the
    model loads once, on the first search."""
    embedder = embedder if embedder is not None else Embedder()
    return [IMAGE_SOURCES.get(cfg.kind)(cfg, Path(cache_dir) / f"{cfg.kind}-{cfg.source_name}", embedder)
            for cfg in config.sources]


__all__ = ["IMAGE_SOURCES", "Embedder", "Gallery", "HttpImageSearch", "ImageSource", "TextEmbedder", "UploadSource",
           "build_sources"]
