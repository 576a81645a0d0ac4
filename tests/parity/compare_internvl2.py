"""InternVL2: our loading, tiling, prompt and forward against the official InternVL code (prints numbers).

Not a test: it needs the official code and a Python environment that runs it (transformers 4.37.2,
torchvision, timm, einops). Usage:

    python tests/parity/compare_internvl2.py --official DIR --official-python PYTHON [--keep WORKDIR]

DIR holds the `internvl` package (OpenGVLab/InternVL `internvl_chat/internvl`, optional imports
such as peft made optional) and `internvl_readme.py` (the model card's `load_image` helpers).
Both sides read the same tiny random-weight checkpoint (official layout, fp32) and the same PNG
images. The official side goes through `model.chat()` up to the language model's generate call,
whose inputs_embeds it captures and runs through the official InternLM2 forward for logits.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# (name, images per user turn, questions per user turn, assistant answers, max tiles)
CASES = [
    ("one image (chat() adds <image>\\n)", [["wide"]], ["What is in the picture?"], [], 4),
    ("two images, one turn (Image-1/Image-2)", [["square", "tall"]], ["Compare the two images."], [], 4),
    ("two images in two turns", [["banner"], ["square"]], ["Describe it.", "And this one?"], ["A banner."], 2),
    ("one image, then a text turn", [["square"], []], ["What colour?", "Why?"], ["Mostly red."], 12),
    ("text only, two turns", [[], []], ["Hello, who are you?", "Tell me a story."], ["I am InternVL."], 12),
]
IMAGES = {"wide": (800, 600), "square": (448, 448), "tall": (300, 500), "banner": (1000, 200)}
GRID_SIZES = [(w, h) for w in range(16, 2400, 61) for h in range(16, 2400, 67)] + [(1000, 1000), (900, 900), (1250, 1000)]


def write_inputs(work: Path) -> None:
    """The tiny checkpoint (fp32) and deterministic test images (gradients plus noise), as files."""
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from tests.support.tiny_internvl2 import write_tiny_internvl2

    write_tiny_internvl2(work / "ckpt", seed=3, dtype="float32")
    rng = np.random.default_rng(7)
    for name, (w, h) in IMAGES.items():
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], axis=-1)
        arr = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr, "RGB").save(work / f"{name}.png")


def official_side(work: Path, official: Path) -> None:
    """Run in the official environment: every case through chat(), results saved as tensors."""
    import PIL
    import torch
    from PIL import Image

    sys.path.insert(0, str(official))
    from internvl.model.internlm2.tokenization_internlm2 import InternLM2Tokenizer
    from internvl.model.internvl_chat import InternVLChatModel
    from internvl_readme import dynamic_preprocess, load_image

    ckpt = work / "ckpt"
    model = InternVLChatModel.from_pretrained(str(ckpt), torch_dtype=torch.float32, use_flash_attn=False).eval()
    tok = InternLM2Tokenizer.from_pretrained(str(ckpt))
    out = {"cases": [], "grids": {}}
    for name, turns, questions, answers, max_tiles in CASES:
        out["cases"].append(_official_case(model, tok, work, turns, questions, answers, max_tiles, load_image))
    for max_num in (1, 2, 4, 6, 12):
        out["grids"][max_num] = [_official_grid(dynamic_preprocess, w, h, max_num) for w, h in GRID_SIZES]
    out["pillow"] = PIL.__version__
    sys.path.insert(0, str(ROOT))
    from studio.families.internvl_tiling import pixel_values  # ours, under this environment's Pillow

    for case, (name, turns, *_rest, max_tiles) in zip(out["cases"], CASES):
        images = [Image.open(work / f"{img}.png").convert("RGB") for turn in turns for img in turn]
        case["ours_here"] = [pixel_values(img, max_tiles) for img in images]
    tile = load_image(str(work / "wide.png"), input_size=336, max_num=1)  # 24×24 patches: resized positions
    with torch.no_grad():
        out["tower_336"] = model.vision_model(pixel_values=tile).last_hidden_state
    out["pixels_336"] = tile
    torch.save(out, work / "official.pt")


class _SizeProbe:
    """Stands in for a PIL image: dynamic_preprocess only reads .size, resizes and crops."""

    def __init__(self, size):
        self.size = size

    def resize(self, size, *args, **kwargs):
        return _SizeProbe(size)

    def crop(self, box):
        return box


def _official_grid(dynamic_preprocess, w, h, max_num):
    """(columns, rows) the official dynamic_preprocess picks, read from its last crop box."""
    boxes = dynamic_preprocess(_SizeProbe((w, h)), max_num=max_num, image_size=448, use_thumbnail=False)
    return boxes[-1][2] // 448, boxes[-1][3] // 448


def _official_case(model, tok, work, turns, questions, answers, max_tiles, load_image):
    """One conversation through the official chat(): ids, pixels, ViT features, logits."""
    import torch

    pixels = [load_image(str(work / f"{img}.png"), max_num=max_tiles) for turn in turns for img in turn]
    total = len(pixels)
    texts, k = [], 0
    for turn, question in zip(turns, questions):
        prefix = ""
        for _ in turn:
            k += 1
            prefix += f"Image-{k}: <image>\n" if total > 1 else "<image>\n"
        texts.append(prefix + question)
    history = list(zip(texts[:-1], answers)) or None
    question = texts[-1] if history or total != 1 or not turns[-1] else questions[-1]  # chat() adds <image>\n
    seen = {}

    def lm_generate(**kw):
        seen["embeds"], seen["mask"] = kw["inputs_embeds"], kw["attention_mask"]
        return torch.tensor([[2]])

    inner = model.generate

    def generate(pixel_values=None, input_ids=None, attention_mask=None, **kw):
        seen["ids"] = input_ids
        return inner(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask, **kw)

    model.language_model.generate, model.generate = lm_generate, generate
    pv = torch.cat(pixels) if pixels else None
    model.chat(tok, pv, question, dict(max_new_tokens=1, do_sample=False), history=history,
               num_patches_list=[p.shape[0] for p in pixels] if pixels else None)
    with torch.no_grad():
        logits = model.language_model(inputs_embeds=seen["embeds"], attention_mask=seen["mask"]).logits[0]
        feats = model.extract_feature(pv) if pv is not None else None
    return {"ids": seen["ids"][0].tolist(), "pixels": pixels, "features": feats, "logits": logits}


def our_case(family, parts, work: Path, turns, questions, answers, max_tiles, pixels=None):
    """The same conversation through our family: ids, pixels, ViT features, logits (`pixels`: use these tiles)."""
    import torch
    from PIL import Image

    from studio.core.types import ImagePart, Message, TextPart

    messages = []
    for i, (turn, question) in enumerate(zip(turns, questions)):
        images = [ImagePart(Image.open(work / f"{name}.png").convert("RGB")) for name in turn]
        messages.append(Message("user", [*images, TextPart(question)]))
        if i < len(answers):
            messages.append(Message.of("assistant", answers[i]))
    prompt = family.prepare(parts.tokenizer, messages, max_tiles)
    prompt.pixel_values = prompt.pixel_values if pixels is None else pixels
    embeds, _ = parts.vision.embed(parts.lm, prompt)
    with torch.no_grad():
        logits = parts.lm(inputs_embeds=embeds).logits[0]
        feats = torch.cat([parts.vision.features(p) for p in prompt.pixel_values]) if prompt.pixel_values else None
    return {"ids": prompt.ids, "pixels": prompt.pixel_values, "features": feats, "logits": logits}


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


def compare(work: Path) -> bool:
    """Our side against official.pt; prints one line per check, True when all are within target."""
    import PIL
    import torch

    from studio.families.internvit import tower_hidden
    from studio.families.internvl2 import InternVL2Family
    from studio.families.internvl_tiling import choose_grid

    ref = torch.load(work / "official.pt", weights_only=False)
    family = InternVL2Family()
    parts = family.load(work / "ckpt", torch.float32, lambda f, s: None)
    ok = True
    print(f"Pillow: {PIL.__version__} here, {ref['pillow']} in the official environment")
    for (name, *case), theirs in zip(CASES, ref["cases"]):
        ours = our_case(family, parts, work, *case)
        same_ids = ours["ids"] == theirs["ids"]
        tiles = [p.shape[0] for p in ours["pixels"]], [p.shape[0] for p in theirs["pixels"]]
        pix = _max_list_diff(ours["pixels"], theirs["pixels"])
        pix_there = _max_list_diff(theirs["ours_here"], theirs["pixels"])
        if pix:  # a Pillow difference: check the model path on the official tiles as well
            ours = our_case(family, parts, work, *case, pixels=theirs["pixels"])
        feat, logit = _max_diff(ours["features"], theirs["features"]), _max_diff(ours["logits"], theirs["logits"])
        good = same_ids and tiles[0] == tiles[1] and pix_there == 0.0 and feat <= 1e-4 and logit <= 1e-4
        ok &= good
        on = " (on the official tiles)" if pix else ""
        print(f"[{'ok' if good else 'FAIL'}] {name}: {len(ours['ids'])} ids, equal={same_ids}; tiles ours "
              f"{tiles[0]} official {tiles[1]}; pixel diff {pix:.3g} (same Pillow: {pix_there:.3g}); "
              f"ViT feature diff{on} {feat:.3g}; logits max abs diff{on} {logit:.3g} "
              f"(|logits| ≤ {float(theirs['logits'].abs().max()):.3g})")
    grid_bad = 0
    for max_num, grids in ref["grids"].items():
        grid_bad += sum(choose_grid(w, h, int(max_num)) != tuple(g) for (w, h), g in zip(GRID_SIZES, grids))
    n = len(GRID_SIZES) * len(ref["grids"])
    print(f"[{'ok' if not grid_bad else 'FAIL'}] tiling grid choice: {n - grid_bad}/{n} sizes × max tiles equal")
    with torch.no_grad():
        hidden = tower_hidden(parts.vision.tower, parts.vision.dims, ref["pixels_336"])
    tower = _max_diff(hidden, ref["tower_336"])
    print(f"[{'ok' if tower <= 1e-4 else 'FAIL'}] InternViT at 336 px (interpolated positions): max abs diff {tower:.3g}")
    return ok and not grid_bad and tower <= 1e-4


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, required=True, help="folder with the internvl package and internvl_readme.py")
    ap.add_argument("--official-python", default=sys.executable, help="python of the official environment")
    ap.add_argument("--keep", type=Path, help="work folder to use and keep (default: a temporary one)")
    ap.add_argument("--official-side", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.official_side:
        official_side(args.official_side, args.official.resolve())
        return 0
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="internvl2-parity-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        write_inputs(work)
        subprocess.run([args.official_python, __file__, "--official", str(args.official), "--official-side",
                        str(work)], check=True, cwd=str(work))
        return 0 if compare(work) else 1


if __name__ == "__main__":
    sys.exit(main())
