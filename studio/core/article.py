"""Article drafts (图文创作): paragraphs, the image placed after each, and how they were made.

Plain, deep-copyable dataclasses; image files are referenced by absolute path (the draft's own
folder under the data dir, so a draft keeps its pictures whatever happens to the gallery).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Literal, Optional, get_args

from pydantic import BaseModel, ConfigDict, Field

from studio.core.session import new_id


DraftStatus = Literal["", "writing", "done", "stopped", "failed"]


def _status(value) -> DraftStatus:
    """A stored status, or "" for one this version does not know (a row from a newer studio)."""
    return value if value in get_args(DraftStatus) else ""


class ArticleParams(BaseModel):
    """Generation settings, as the official demo exposes them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    beams: int = Field(1, ge=1, le=6)
    repetition_penalty: float = Field(1.05, ge=1.0, le=10.0)
    max_new_tokens: int = Field(700, ge=50, le=4096)
    do_sample: bool = False
    seed: Optional[int] = Field(None, ge=0, le=2**32 - 1)
    image_count: Optional[int] = Field(None, ge=0, le=15)  # None: the model decides how many
    model_selects: bool = True  # let a vision model pick among candidates when one is configured


@dataclass
class Candidate:
    """One image offered for a position."""

    path: str
    source: str  # "gallery" | "upload" | "http"
    score: float = 0.0
    label: str = ""  # the gallery caption, the upload's name, or the provider's URL


@dataclass
class ArticleImage:
    """The image shown after a paragraph: the chosen file, its caption and the alternatives."""

    path: str
    caption: str
    source: str = "gallery"
    candidates: list[Candidate] = field(default_factory=list)
    chosen: int = 0  # which candidate is shown (the swap gallery marks it)


@dataclass
class ArticleBlock:
    """A paragraph and, optionally, the image that follows it."""

    text: str
    image: Optional[ArticleImage] = None


@dataclass
class ArticleDraft:
    """One article: what was asked, the blocks, and the settings and model that wrote it."""

    id: str = field(default_factory=new_id)
    title: str = ""
    instruction: str = ""  # the title or instruction the user gave
    material: str = ""  # optional source material
    blocks: list[ArticleBlock] = field(default_factory=list)
    params: ArticleParams = field(default_factory=ArticleParams)
    engine: str = "chat"
    model: str = ""  # the model's label when it was written
    uploads: list[str] = field(default_factory=list)  # paths of the user's images for this article
    # Stored while Write runs, so a draft left "writing" after a restart is known to be interrupted;
    # "" is a draft from before this field (or never written), read as finished.
    status: DraftStatus = ""
    step: str = ""  # the pipeline step running (or last run) when the status was stored
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    def touch(self) -> None:
        """Mark the draft as changed now."""
        self.updated = time.time()

    def text(self) -> str:
        """The article's paragraphs joined by blank lines."""
        return "\n\n".join(b.text for b in self.blocks)

    def images(self) -> list[ArticleImage]:
        """The placed images, in order."""
        return [b.image for b in self.blocks if b.image is not None]

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        data = asdict(self)
        data["params"] = self.params.model_dump(mode="json")
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ArticleDraft":
        """Rebuild a draft written by `to_dict`."""

        def image(d: Optional[dict]) -> Optional[ArticleImage]:
            if not d:
                return None
            return ArticleImage(d["path"], d.get("caption", ""), d.get("source", "gallery"),
                                [Candidate(**c) for c in d.get("candidates", [])], int(d.get("chosen", 0) or 0))

        return cls(
            id=data["id"], title=data.get("title", ""), instruction=data.get("instruction", ""),
            material=data.get("material", ""),
            blocks=[ArticleBlock(b.get("text", ""), image(b.get("image"))) for b in data.get("blocks", [])],
            params=ArticleParams(**data.get("params", {})), engine=data.get("engine", "chat"),
            model=data.get("model", ""), uploads=list(data.get("uploads", [])),
            status=_status(data.get("status", "")), step=str(data.get("step", "")),
            created=data.get("created", time.time()), updated=data.get("updated", time.time()),
        )


UNDO_DEPTH = 20


@dataclass
class ArticleSession:
    """A user's open draft in the article tab, with snapshots for undo."""

    draft: ArticleDraft = field(default_factory=ArticleDraft)
    undo: list[dict] = field(default_factory=list)

    def snapshot(self) -> None:
        """Remember the draft as it is now, before an edit."""
        self.undo.append(self.draft.to_dict())
        del self.undo[:-UNDO_DEPTH]

    def restore(self) -> bool:
        """Go back to the last snapshot; False when there is none."""
        if not self.undo:
            return False
        self.draft = ArticleDraft.from_dict(self.undo.pop())
        return True
