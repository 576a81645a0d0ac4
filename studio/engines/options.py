"""What every engine's config options share; each engine file subclasses these with its own.

An engine's options class is chosen by the `engine:` key of its YAML block (studio.config), so a
key another engine reads is refused by name, and each engine sees only the settings it understands.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from studio.core.article import ArticleParams
from studio.core.types import GenParams


class EngineOptions(BaseModel):
    """One model behind one or more tabs: the settings every engine reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: str
    family: str = "auto"
    label: Optional[str] = None
    context_window: Optional[int] = Field(None, ge=256, le=1_048_576)
    # None: the model's own default (InternLM2's meta instruction, the chat template's, or none);
    # "": no system prompt at all.
    system_prompt: Optional[str] = None
    # Most 448-px tiles per image for tiling vision models (InternVL2); None: the checkpoint's value.
    max_tiles: Optional[int] = Field(None, ge=1, le=40)
    defaults: GenParams = GenParams()
    # Languages the model can write (ISO 639-1 codes, e.g. [en]); None: unknown, so nothing is checked.
    languages: Optional[list[Annotated[str, Field(pattern=r"^[a-z]{2}$")]]] = Field(None, min_length=1)
    # Rough decoding speed on a typical machine, for time estimates before a reply has been measured.
    tokens_per_s: Optional[float] = Field(None, gt=0, le=100_000)
    # The article tab's settings for this model (a small CPU model wants a shorter article than XComposer2).
    article: ArticleParams = ArticleParams()
    # Keys other engines read that this one refuses with a message of its own (else: "only for engine: …").
    refused: ClassVar[dict[str, str]] = {}

    # How many requests the engine serves at once (the UI's queue limit for its listeners).
    def concurrency(self) -> int:
        """1 unless the engine batches concurrent requests (its options say how many)."""
        return 1

    def display_name(self) -> str:
        """What the UI calls this engine's model before it has loaded."""
        return self.label or self.engine

    def expected_system_prompt(self) -> Optional[str]:
        """The system prompt the model will use by default, as far as the config tells before it loads."""
        return self.system_prompt


class LocalOptions(EngineOptions):
    """Settings of engines that load a checkpoint on this machine."""

    model_path: str
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False

    def display_name(self) -> str:
        """The label, else the model folder's name."""
        from pathlib import Path

        return self.label or Path(self.model_path).name or self.engine

    def expected_system_prompt(self) -> Optional[str]:
        """The configured one, else the named family's default (None for a chat template: it is in the tokenizer)."""
        if self.system_prompt is not None or self.family == "auto":
            return self.system_prompt
        from studio.families import FAMILIES
        from studio.families.base import system_default

        return system_default(FAMILIES.get(self.family)(), None) if self.family in FAMILIES else None
