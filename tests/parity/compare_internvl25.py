"""InternVL2.5 / InternVL3: our `internvl2_5` family against the official InternVL code (prints numbers).

Not a test: it needs the official code and a Python environment that runs it (transformers 4.37.2,
torchvision, timm, einops, sentencepiece). Usage:

    python tests/parity/compare_internvl25.py --official DIR --official-python PYTHON [--keep WORKDIR]
        [--golden tests/support/internvl25_golden.json]

DIR holds the `internvl` package (OpenGVLab/InternVL `internvl_chat/internvl`, `from peft import …`
made optional) and `internvl_readme.py` (the README's InternVL2.5 `load_image` helpers, which the
InternVL3 model card uses unchanged). For each tiny checkpoint style of
`tests/support/tiny_internvl25.py` (InternVL3 with Qwen2.5, InternVL2.5 with Qwen2.5, InternVL2.5
with InternLM2.5, InternVL3 with InternViT-6B's vision config; fp32) both sides read the same
files and PNG images. The official side runs
`InternVLChatModel.chat()` (template `internvl2_5` from config.json, its tokenizer — `Qwen2Tokenizer`
or `InternLM2Tokenizer` — and `extract_feature`) up to the language model's `generate`, captures
the `inputs_embeds`, runs them through its language model for logits over all positions, and
greedily generates 8 tokens through chat(). `--golden` writes the official prompt texts and ids of
small fixed conversations (one tile per image) as test data for CI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STYLES = ("internvl3", "internvl2_5-qwen2", "internvl2_5-internlm2", "internvl3-vit6b")
# (name, images per user turn, questions per user turn, assistant answers, max tiles, own system message)
CASES = [
    ("one image (chat() adds <image>\\n)", [["wide"]], ["What is in the picture?"], [], 4, None),
    ("two images, one turn (Image-1/Image-2)", [["square", "tall"]], ["Compare the two images."], [], 4, None),
    ("two images in two turns", [["banner"], ["square"]], ["Describe it.", "And this one?"], ["A banner."], 2, None),
    ("one image, then a text turn", [["square"], []], ["What colour?", "为什么？"], ["Mostly red."], 12, None),
    ("text only, own system message", [[], []], ["Hello, who are you?", "Tell me a story."], ["I am InternVL."], 12,
     "Be brief."),
]
IMAGES = {"wide": (800, 600), "square": (448, 448), "tall": (300, 500), "banner": (1000, 200)}
# Golden conversations for CI: every image is "square" (one tile), so the ids stay small.
GOLDEN = [
    ("text", [[]], ["Hello, who are you?"], [], None),
    ("text_zh_system", [[], []], ["你好，请介绍一下你自己。", "北京是中国的首都吗？"], ["我是书生·万象。"], "请用中文回答。"),
    ("one_image", [["square"]], ["What is in the picture?"], [], None),
    ("two_images_one_turn", [["square", "square"]], ["Compare them."], [], None),
    ("image_then_text", [["square"], []], ["Describe it.", "Why?"], ["A square."], None),
]
GEN_TOKENS = 8


def write_inputs(work: Path) -> None:
    """The tiny checkpoints (fp32) and deterministic test images (gradients plus noise), as files."""
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from tests.support.tiny_internvl25 import write_tiny_internvl25

    for k, style in enumerate(STYLES):
        write_tiny_internvl25(work / style, style, seed=3 + k, dtype="float32")
    rng = np.random.default_rng(7)
    for name, (w, h) in IMAGES.items():
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], axis=-1)
        arr = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr, "RGB").save(work / f"{name}.png")


def _question_texts(turns, questions):
    """User texts as the official multi-image form writes them (chat() adds `<image>\\n` itself for one)."""
    total = sum(len(t) for t in turns)
    texts, k = [], 0
    for turn, question in zip(turns, questions):
        prefix = ""
        for _ in turn:
            k += 1
            prefix += f"Image-{k}: <image>\n" if total > 1 else "<image>\n"
        texts.append(prefix + question)
    last = texts[-1] if len(turns) > 1 or total != 1 or not turns[-1] else questions[-1]
    return texts, last


def official_side(work: Path, official: Path) -> None:
    """Run in the official environment: every case through chat(), results saved as tensors."""
    import torch

    sys.path.insert(0, str(official))
    from internvl.model.internlm2.tokenization_internlm2 import InternLM2Tokenizer
    from internvl.model.internvl_chat import InternVLChatModel
    from internvl_readme import load_image
    from transformers import Qwen2Tokenizer

    out = {}
    for style in STYLES:
        ckpt = work / style
        model = InternVLChatModel.from_pretrained(str(ckpt), torch_dtype=torch.float32, use_flash_attn=False).eval()
        tok = (InternLM2Tokenizer if style.endswith("internlm2") else Qwen2Tokenizer).from_pretrained(str(ckpt))
        cases = [_official_case(model, tok, work, turns, qs, ans, tiles, system, load_image)
                 for _name, turns, qs, ans, tiles, system in CASES]
        golden = [_official_case(model, tok, work, turns, qs, ans, 1, system, load_image, features=False)
                  for _name, turns, qs, ans, system in GOLDEN]
        out[style] = {"cases": cases, "golden": golden, "llm": type(model.language_model).__name__,
                      "tokenizer": type(tok).__name__}
    torch.save(out, work / "official.pt")


def _official_case(model, tok, work, turns, questions, answers, max_tiles, system, load_image, features=True):
    """One conversation through the official chat(): prompt text, ids, pixels, ViT features, logits, greedy ids."""
    import torch

    pixels = [load_image(str(work / f"{img}.png"), max_num=max_tiles) for turn in turns for img in turn]
    texts, question = _question_texts(turns, questions)
    history = list(zip(texts[:-1], answers)) or None
    seen = {}
    inner_generate, inner_call = model.generate, type(tok).__call__

    def spy_call(self, text, *args, **kwargs):
        seen["query"] = text
        return inner_call(self, text, *args, **kwargs)

    def generate(pixel_values=None, input_ids=None, attention_mask=None, **kw):
        seen["ids"] = input_ids[0].tolist()
        lm_generate = model.language_model.generate

        def capture(**lm_kw):
            seen["embeds"], seen["mask"] = lm_kw["inputs_embeds"], lm_kw["attention_mask"]
            return lm_generate(**lm_kw)

        model.language_model.generate = capture
        try:
            result = inner_generate(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask, **kw)
        finally:
            del model.language_model.generate
        seen["generated"] = result[0].tolist()
        return result

    model.generate, type(tok).__call__ = generate, spy_call
    saved_system = model.system_message
    if system is not None:
        model.system_message = system
    try:
        pv = torch.cat(pixels) if pixels else None
        model.chat(tok, pv, question, dict(max_new_tokens=GEN_TOKENS if features else 1, do_sample=False),
                   history=history, num_patches_list=[p.shape[0] for p in pixels] if pixels else None)
    finally:
        model.generate, type(tok).__call__, model.system_message = inner_generate, inner_call, saved_system
    result = {"ids": seen["ids"], "query": _collapse_images(seen["query"]), "pixels": pixels,
              "generated": seen["generated"]}
    if features:
        with torch.no_grad():
            result["logits"] = model.language_model(inputs_embeds=seen["embeds"], attention_mask=seen["mask"]).logits[0]
            result["features"] = model.extract_feature(pv) if pv is not None else None
    return result


def _collapse_images(query: str) -> str:
    """The query with each expanded `<img><IMG_CONTEXT>…</img>` shown as `<image>` again."""
    import re

    return re.sub(r"<img>(?:<IMG_CONTEXT>)+</img>", "<image>", query)


def _messages(work: Path, turns, questions, answers, system):
    """The conversation as our Message list."""
    from PIL import Image

    from studio.core.types import ImagePart, Message, TextPart

    messages = [Message.of("system", system)] if system is not None else []
    for i, (turn, question) in enumerate(zip(turns, questions)):
        images = [ImagePart(Image.open(work / f"{name}.png").convert("RGB")) for name in turn]
        messages.append(Message("user", [*images, TextPart(question)]))
        if i < len(answers):
            messages.append(Message.of("assistant", answers[i]))
    return messages


def our_case(family, parts, work: Path, turns, questions, answers, max_tiles, system, pixels=None):
    """The same conversation through our family: prompt text, ids, pixels, ViT features, logits, greedy ids."""
    import torch

    messages = _messages(work, turns, questions, answers, system)
    prompt = family.prepare(parts.tokenizer, messages, max_tiles)
    prompt.pixel_values = prompt.pixel_values if pixels is None else pixels
    embeds, _ = parts.vision.embed(parts.lm, prompt)
    with torch.no_grad():
        logits = parts.lm(inputs_embeds=embeds).logits[0]
        feats = torch.cat([parts.vision.features(p) for p in prompt.pixel_values]) if prompt.pixel_values else None
        stops = family.stop_token_ids(parts.tokenizer, None)
        generated = parts.lm.generate(inputs_embeds=embeds, attention_mask=torch.ones(1, embeds.shape[1], dtype=torch.long),
                                      max_new_tokens=GEN_TOKENS, do_sample=False, eos_token_id=stops,
                                      pad_token_id=stops[0])[0].tolist()
    return {"ids": prompt.ids, "query": _query(family, parts.tokenizer, messages), "pixels": prompt.pixel_values,
            "features": feats, "logits": logits, "generated": generated}


def _query(family, tokenizer, messages) -> str:
    """Our prompt text without the BOS marker (the official query leaves BOS to its tokenizer)."""
    text = family.build_prompt(tokenizer, messages)
    bos = family.template.bos_text if family.template.bos_id is not None else ""
    return text[len(bos):] if bos and text.startswith(bos) else text


def _official_new_tokens(generated: list, bos_id) -> list:
    """The official greedy ids without the BOS that transformers 4.37's generate puts first when it
    starts from inputs_embeds alone (it is not generated: it stands for the empty input_ids)."""
    return generated[1:] if generated and generated[0] == bos_id else generated


def _max_diff(a, b) -> float:
    """Max abs difference of two tensors (inf when the shapes differ)."""
    if a is None or b is None:
        return 0.0 if a is None and b is None else float("inf")
    return float((a.float() - b.float()).abs().max()) if a.shape == b.shape else float("inf")


def _max_list_diff(ours: list, theirs: list) -> float:
    """Max abs difference over two lists of tensors (inf when their lengths differ)."""
    if len(ours) != len(theirs):
        return float("inf")
    return max([_max_diff(a, b) for a, b in zip(ours, theirs)] or [0.0])


def compare_style(work: Path, style: str, ref: dict) -> bool:
    """Our side of one checkpoint style against the official results; one line per case."""
    import torch

    from studio.families.detect import resolve_family

    family = resolve_family("auto", work / style)
    parts = family.load(work / style, torch.float32, lambda f, s: None)
    print(f"{style}: family {family.name}, LM ours {type(parts.lm).__name__} / official {ref['llm']}, "
          f"tokenizer ours {type(parts.tokenizer).__name__} / official {ref['tokenizer']}")
    ok = True
    for (name, *case), theirs in zip(CASES, ref["cases"]):
        ours = our_case(family, parts, work, *case)
        same_ids, same_text = ours["ids"] == theirs["ids"], ours["query"] == theirs["query"]
        pix = _max_list_diff(ours["pixels"], theirs["pixels"])
        if pix:  # a Pillow difference: check the model path on the official tiles as well
            ours = our_case(family, parts, work, *case, pixels=theirs["pixels"])
        feat, logit = _max_diff(ours["features"], theirs["features"]), _max_diff(ours["logits"], theirs["logits"])
        same_gen = ours["generated"] == _official_new_tokens(theirs["generated"], parts.lm.config.bos_token_id)
        good = same_ids and same_text and feat <= 1e-4 and logit <= 1e-4 and same_gen
        ok &= good
        on = " (on the official tiles)" if pix else ""
        print(f"  [{'ok' if good else 'FAIL'}] {name}: {len(ours['ids'])} ids equal={same_ids}, prompt text "
              f"equal={same_text}; pixel diff {pix:.3g}; ViT feature diff{on} {feat:.3g}; logits max abs diff over "
              f"all positions{on} {logit:.3g} (|logits| ≤ {float(theirs['logits'].abs().max()):.3g}); "
              f"greedy {GEN_TOKENS} tokens equal={same_gen}")
    for (name, *case), theirs in zip(GOLDEN, ref["golden"]):
        turns, qs, ans, system = case
        messages = _messages(work, turns, qs, ans, system)
        good = family.encode(parts.tokenizer, messages, 1) == theirs["ids"] and \
            _query(family, parts.tokenizer, messages) == theirs["query"]
        ok &= good
        print(f"  [{'ok' if good else 'FAIL'}] golden {name}: {len(theirs['ids'])} ids, prompt and ids equal={good}")
    return ok


def _runs(ids: list, repeated: int) -> list:
    """`ids` with each run of `repeated` (the image context id) written as [repeated, count]."""
    out: list = []
    for i in ids:
        if i == repeated and out and isinstance(out[-1], list):
            out[-1][1] += 1
        else:
            out.append([i, 1] if i == repeated else i)
    return out


def write_golden(ref: dict, path: Path) -> None:
    """The official prompt texts and ids of the GOLDEN conversations, per style, as JSON test data
    (runs of `<IMG_CONTEXT>` ids stored as [id, count], which keeps the file small)."""
    data = {"cases": [{"name": n, "turns": t, "questions": q, "answers": a, "system": s} for n, t, q, a, s in GOLDEN]}
    for style in STYLES[:3]:  # the InternViT-6B style shares InternVL3's tokenizer and template
        context = 92546 if style.endswith("internlm2") else 151667
        data[style] = [{"query": g["query"], "ids": _runs(g["ids"], context)} for g in ref[style]["golden"]]
    path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"golden prompts and ids written to {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, required=True, help="folder with the internvl package and internvl_readme.py")
    ap.add_argument("--official-python", default=sys.executable, help="python of the official environment")
    ap.add_argument("--keep", type=Path, help="work folder to use and keep (default: a temporary one)")
    ap.add_argument("--golden", type=Path, help="write the golden prompts and ids here")
    ap.add_argument("--reuse", action="store_true", help="with --keep: reuse the official results saved there")
    ap.add_argument("--official-side", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.official_side:
        official_side(args.official_side, args.official.resolve())
        return 0
    sys.path.insert(0, str(ROOT))
    import torch

    with tempfile.TemporaryDirectory(prefix="internvl25-parity-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not (args.reuse and (work / "official.pt").is_file()):
            write_inputs(work)
            subprocess.run([args.official_python, __file__, "--official", str(args.official), "--official-side",
                            str(work)], check=True, cwd=str(work))
        ref = torch.load(work / "official.pt", weights_only=False)
        ok = all([compare_style(work, style, ref[style]) for style in STYLES])
        if args.golden:
            write_golden(ref, args.golden)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
