"""InternVL2.5 and InternVL3 (family `internvl2_5`): the InternVL2 vision path (InternViT-300M-448px-V2_5,
pixel shuffle v2, mlp1) behind a Qwen2.5 or InternLM2.5 language model, with the `internvl2_5` template.

Both generations ship `architectures: ["InternVLChatModel"]` and `template: "internvl2_5"`; the
language model is named in `llm_config.architectures`:
- `Qwen2ForCausalLM` (InternVL2.5-1B/4B/38B/78B, InternVL3-1B/2B/8B/14B/38B/78B): loaded as
  transformers' native Qwen2, tokenizer = the checkpoint's Qwen2 BPE files (no BOS);
- `InternLM2ForCausalLM` (InternVL2.5-2B/8B/26B): loaded as Llama like InternVL2, SentencePiece
  tokenizer (BOS `<s>` first).

Prompt (conversation.py `internvl2_5`, MPT style with `<|im_end|>\\n` as the separator):

    [<s>]<|im_start|>system\\n{SYS}<|im_end|>\\n<|im_start|>user\\n{Q}<|im_end|>\\n<|im_start|>assistant\\n

Images are placed as in InternVL2 (`<image>\\n` for a single image, `Image-k: <image>\\n` for
several; `<img>` + `<IMG_CONTEXT>`×256·tiles + `</img>` in the ids), the special ids being read
from the checkpoint's tokenizer (151644/151645 and 151665-151667 in the Qwen2 one). chat() stops
on `<|im_end|>`. A config.json `system_message` string replaces the template's, as in the
official model's __init__.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from studio.errors import StudioError
from studio.families.internvl2 import MARKERS, ChatTemplate, InternVL2Family

SYSTEM_MESSAGE = "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"
TEMPLATE_NAME = "internvl2_5"
QWEN2, INTERNLM2 = "Qwen2ForCausalLM", "InternLM2ForCausalLM"
# The Qwen2.5 tokenizer with InternVL's added tokens, as InternVL2.5-1B and InternVL3 ship it.
QWEN2_TEMPLATE = ChatTemplate(SYSTEM_MESSAGE, sep="\n", bos_id=None, im_start_id=151644, im_end_id=151645,
                              img_start_id=151665, img_end_id=151666, img_context_id=151667)
INTERNLM2_TEMPLATE = ChatTemplate(SYSTEM_MESSAGE, sep="\n")


class InternVL25Family(InternVL2Family):
    """InternVL2.5 / InternVL3 with a Qwen2 or InternLM2 language model, built from the official checkpoint."""

    name = "internvl2_5"
    default_system_prompt: Optional[str] = SYSTEM_MESSAGE

    def __init__(self, tiling: Any = None) -> None:
        super().__init__(tiling)
        # The Qwen2 ids until `load` reads the checkpoint's own tokenizer.
        self.template = QWEN2_TEMPLATE

    def _llm_config(self, config: dict, model_dir: Path) -> dict:
        """llm_config, which must be a Qwen2 or InternLM2 one, with the internvl2_5 template."""
        where = model_dir / "config.json"
        llm_cfg = config.get("llm_config")
        archs = llm_cfg.get("architectures") if isinstance(llm_cfg, dict) else None
        if archs not in ([QWEN2], [INTERNLM2]):
            raise StudioError(
                f"{where}: llm_config.architectures is {archs!r}; the internvl2_5 family covers InternVL2.5 "
                f"and InternVL3 with a {QWEN2} or {INTERNLM2} language model.",
                "InternVL3-9B (InternLM3) and other language models need another family.")
        if config.get("template") != TEMPLATE_NAME:
            hint = ("This is an InternVL2 checkpoint: set `family: internvl2` (or `auto`)."
                    if config.get("template") == "internlm2-chat" else
                    "This checkpoint uses another prompt format; set `family:` accordingly.")
            raise StudioError(f"{where}: template is {config.get('template')!r}, expected {TEMPLATE_NAME!r}.", hint)
        return llm_cfg

    def _load_tokenizer(self, model_dir: Path, llm_cfg: dict, config: dict) -> Any:
        """The checkpoint's tokenizer; the template takes its marker ids and config.json's system_message."""
        qwen = llm_cfg.get("architectures") == [QWEN2]
        tokenizer = _qwen2_tokenizer(model_dir, llm_cfg) if qwen else _sentencepiece_tokenizer(model_dir)
        ids = [_marker_id(tokenizer, name, model_dir) for name in MARKERS]
        system = config.get("system_message")
        base = QWEN2_TEMPLATE if qwen else INTERNLM2_TEMPLATE
        self.template = replace(base, im_start_id=ids[0], im_end_id=ids[1], img_start_id=ids[2], img_end_id=ids[3],
                                img_context_id=ids[4],
                                system_message=system if isinstance(system, str) and system else SYSTEM_MESSAGE)
        self.default_system_prompt = self.template.system_message
        return tokenizer


def _qwen2_tokenizer(model_dir: Path, llm_cfg: dict) -> Any:
    """The Qwen2 BPE tokenizer from the folder's own files (vocab.json + merges.txt, or tokenizer.json)."""
    from transformers import AutoTokenizer

    from studio.families.internvl_qwen2 import qwen2_config

    if not any((model_dir / f).is_file() for f in ("tokenizer.json", "vocab.json")):
        from studio.errors import ModelNotFound

        raise ModelNotFound(f"{model_dir}: no tokenizer files (vocab.json + merges.txt, or tokenizer.json).",
                            "Copy the checkpoint's tokenizer files into this folder.")
    try:
        # The language model's config, so that config.json's `internvl_chat` type is not looked up.
        return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False,
                                             config=qwen2_config(llm_cfg, model_dir / "config.json"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StudioError(f"{model_dir}: cannot load the Qwen2 tokenizer: {first}",
                          "The tokenizer files look damaged or incomplete; copy them again.") from None


def _sentencepiece_tokenizer(model_dir: Path) -> Any:
    """InternLM2's SentencePiece tokenizer (InternVL2.5-2B/8B/26B)."""
    from studio.families.sp_tokenizer import SPTokenizer

    return SPTokenizer.from_dir(model_dir)


def _marker_id(tokenizer: Any, name: str, model_dir: Path) -> int:
    """The id of one template marker, which the tokenizer must define as an added token."""
    token_id = tokenizer.convert_tokens_to_ids(name)
    if not isinstance(token_id, int) or token_id == getattr(tokenizer, "unk_token_id", None):
        raise StudioError(f"{model_dir / 'tokenizer_config.json'}: the tokenizer has no {name} token.",
                          "InternVL's tokenizer files define the image and turn tokens; copy them again.")
    return token_id
