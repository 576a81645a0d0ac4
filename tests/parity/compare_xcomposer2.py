"""XComposer2-VL: our loading, prompt, vision and Partial-LoRA forward against the official code (prints numbers).

Not a test: it needs the official remote code and a Python environment that runs it
(transformers 4.37.2, torchvision, einops). Usage:

    python tests/parity/compare_xcomposer2.py --official DIR --official-python PYTHON [--keep WORKDIR]

DIR holds the official XComposer2-VL files (`modeling_internlm_xcomposer2.py`, `modeling_internlm2.py`,
`build_mlp.py`, `configuration_internlm_xcomposer2.py`, `tokenization_internlm_xcomposer2.py`), left
as published. Three things are adjusted at run time on the official side, because the official
code hard-codes the real model's sizes: the CLIP tower, which it downloads from the hub, is built
from a local config with the tiny checkpoint's dimensions (the official code then stretches its
577 positions to 1226 and loads the checkpoint as usual); the projector widths (hard-coded
1024 → 4096) take the tiny widths; and PLoRA's hard-coded rank/alpha (256/256) take the tiny rank
with alpha = rank (scaling 1.0, as 256/256).

Both sides read the same tiny random-weight checkpoint (official layout, fp32) and the same PNG
images. The official side builds each prompt with its own `interleav_wrap_chat` (images) or
`build_inputs` (text only) and runs its own forward with `im_mask`; we compare the token ids, the
preprocessed pixels, the logits at every position, and one chunked prefill plus one decode step
through the engine's decoder.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGES = {"wide": (800, 600), "small": (300, 400), "square": (490, 490), "mixed": (300, 800)}
IMG = object()  # marks an image in our-side message specs
# name, official (meta or None for chat()'s default, history, query, images), ours (role, parts) list
CASES = [
    ("one image, README form", (None, [], "<ImageHere>Please describe this image in detail.", ["wide"]),
     [("user", [("wide", IMG), "Please describe this image in detail."])]),
    ("two images inside one query",
     (None, [], "Image 1: <ImageHere>; Image 2: <ImageHere>. Compare them.", ["wide", "small"]),
     [("user", ["Image 1: ", ("wide", IMG), "; Image 2: ", ("small", IMG), ". Compare them."])]),
    ("three images over two turns, two adjacent",
     (None, [("<ImageHere>What is in it?", "A gradient.")], "<ImageHere><ImageHere>And these two?",
      ["square", "wide", "small"]),
     [("user", [("square", IMG), "What is in it?"]), ("assistant", ["A gradient."]),
      ("user", ["And these two?", ("wide", IMG), ("small", IMG)])]),
    ("text only, own system message, two turns",
     ("Answer briefly.", [("Hello, who are you?", "I am XComposer.")], "Tell me a story.", []),
     [("system", ["Answer briefly."]), ("user", ["Hello, who are you?"]), ("assistant", ["I am XComposer."]),
      ("user", ["Tell me a story."])]),
]


def write_inputs(work: Path) -> None:
    """The tiny checkpoint (fp32) and deterministic test images (gradients plus noise), as files."""
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from tests.support.tiny_xcomposer2 import write_tiny_xcomposer2

    write_tiny_xcomposer2(work / "ckpt", seed=3, dtype="float32")
    rng = np.random.default_rng(7)
    for name, (w, h) in IMAGES.items():
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], axis=-1)
        arr = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr, "RGB").save(work / f"{name}.png")


def _official_modules(official: Path, ckpt: Path):
    """The official modules, imported as a package without its __init__, with the size adjustments."""
    import json

    import torch
    from safetensors import safe_open
    from transformers import CLIPVisionConfig, CLIPVisionModel

    names = {}
    for shard in sorted(ckpt.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as f:
            names.update({n: f.get_slice(n).get_shape() for n in f.keys()})
    vit = "vit.vision_tower.vision_model."
    width, inter = names[vit + "embeddings.class_embedding"][0], names[vit + "encoder.layers.0.mlp.fc1.weight"][0]
    layers = len({n.split(".")[5] for n in names if n.startswith(vit + "encoder.layers.")})
    rank = names["model.layers.0.attention.wo.Plora_A.weight"][0]
    hidden = json.loads((ckpt / "config.json").read_text())["hidden_size"]
    # openai/clip-vit-large-patch14-336's architecture with the tiny widths: 336 px → 577 positions.
    clip = CLIPVisionConfig(hidden_size=width, intermediate_size=inter, num_hidden_layers=layers,
                            num_attention_heads=width // 64, image_size=336, patch_size=14,
                            hidden_act="quick_gelu", layer_norm_eps=1e-5)
    CLIPVisionModel.from_pretrained = classmethod(lambda cls, *a, **k: cls(clip))
    pkg = types.ModuleType("xc_official")
    pkg.__path__ = [str(official)]
    sys.modules["xc_official"] = pkg
    mlp = importlib.import_module("xc_official.build_mlp")
    lm = importlib.import_module("xc_official.modeling_internlm2")

    class TinyPLoRA(mlp.PLoRA):
        def __init__(self, *args, lora_r=8, lora_alpha=16, **kwargs):
            super().__init__(*args, lora_r=rank, lora_alpha=rank, **kwargs)

    lm.PLoRA = TinyPLoRA
    xc = importlib.import_module("xc_official.modeling_internlm_xcomposer2")
    # The official mlp2x_gelu projector (Linear, GELU, Linear) with the tiny widths.
    xc.build_vision_projector = lambda: torch.nn.Sequential(
        torch.nn.Linear(width, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden))
    tok = importlib.import_module("xc_official.tokenization_internlm_xcomposer2")
    return xc, tok


def official_side(work: Path, official: Path) -> None:
    """Run in the official environment: every case through the official prompt and forward, saved as tensors."""
    import inspect

    import torch
    from PIL import Image

    ckpt = work / "ckpt"
    xc, tok_mod = _official_modules(official, ckpt)

    class RecordingTokenizer(tok_mod.InternLMXComposer2Tokenizer):
        def __call__(self, text, *args, **kwargs):
            out = super().__call__(text, *args, **kwargs)
            self.calls.append((text, torch.as_tensor(out["input_ids"]).reshape(-1).tolist()))
            return out

    tokenizer = RecordingTokenizer.from_pretrained(str(ckpt))
    tokenizer.calls = []
    model, info = xc.InternLMXComposer2ForCausalLM.from_pretrained(str(ckpt), torch_dtype=torch.float32,
                                                                   output_loading_info=True)
    assert not info["missing_keys"], info["missing_keys"]
    model.eval()
    model.tokenizer = tokenizer
    default_meta = inspect.signature(model.chat).parameters["meta_instruction"].default
    results = []
    for _, (meta, history, query, images), _ in CASES:
        tokenizer.calls.clear()
        pixels = [model.vis_processor(Image.open(work / f"{n}.png").convert("RGB")) for n in images]
        meta = default_meta if meta is None else meta
        with torch.no_grad():
            if pixels:
                embeds = model.encode_img(torch.stack(pixels))
                inputs, im_mask = model.interleav_wrap_chat(tokenizer, query, embeds, history, meta)
                out = model(inputs_embeds=inputs["inputs_embeds"], im_mask=im_mask, use_cache=True)
                mask = im_mask[0]
            else:
                ids = model.build_inputs(tokenizer, query, history, meta)["input_ids"]
                out = model(input_ids=ids, use_cache=True)
                mask = torch.zeros(ids.shape[1], dtype=torch.bool)
            nxt = int(out.logits[0, -1].argmax())
            step = model(input_ids=torch.tensor([[nxt]]), past_key_values=out.past_key_values, use_cache=True)
        ids = torch.zeros(mask.shape[0], dtype=torch.long)
        ids[~mask] = torch.tensor([i for _, call in tokenizer.calls for i in call])
        texts = [t[0] if isinstance(t, list) else t for t, _ in tokenizer.calls]
        results.append({"ids": ids.tolist(), "mask": mask.tolist(), "texts": texts, "pixels": pixels,
                        "logits": out.logits[0], "next": nxt, "step": step.logits[0, -1]})
    import PIL

    mixed = model.vis_processor(Image.open(work / "mixed.png").convert("RGB"))
    torch.save({"cases": results, "mixed": mixed, "pillow": PIL.__version__}, work / "official.pt")


def our_messages(work: Path, spec: list):
    """Our Message list for a case's (role, parts) spec."""
    from PIL import Image

    from studio.core.types import ImagePart, Message, TextPart

    return [Message(role, [ImagePart(Image.open(work / f"{p[0]}.png").convert("RGB")) if isinstance(p, tuple)
                           else TextPart(p) for p in parts]) for role, parts in spec]


def our_case(family, parts, work: Path, spec: list, nxt: int) -> dict:
    """The same conversation through our family: ids, prompt, pixels, logits, chunked prefill + one step."""
    import torch

    from studio.engines.hf_decode import make_decoder

    messages = our_messages(work, spec)
    prompt = family.prepare(parts.tokenizer, messages)
    text = family.build_prompt(parts.tokenizer, messages)
    embeds, mask = parts.vision.embed(parts.lm, prompt)
    with torch.no_grad():
        parts.vision.set_adapter_mask(mask[None])
        logits = parts.lm(inputs_embeds=embeds).logits[0]
        parts.vision.set_adapter_mask(None)
        # The same forward without the adapters: how far off a model without Partial-LoRA would be.
        plain = parts.lm(inputs_embeds=embeds).logits[0] if bool(mask.any()) else logits
        decoder = make_decoder(parts.lm)  # the engine's decoder: 512-token chunks, mask set per chunk
        decoder.start(len(prompt.ids) + 4)
        chunk = lambda a, b: parts.vision.set_adapter_mask(mask[None, a:b])  # noqa: E731
        last = decoder.prefill(prompt.ids, lambda: False, embeds=embeds, on_chunk=chunk)
        parts.vision.set_adapter_mask(None)
        step = decoder.step(nxt)
        decoder.release()
    return {"ids": prompt.ids, "mask": mask.tolist(), "text": text, "pixels": prompt.pixel_values,
            "logits": logits, "plain": plain, "last": last, "step": step, "decoder": decoder.name}


def _max_diff(a, b) -> float:
    """Max abs difference of two tensors (inf when the shapes differ)."""
    return float((a.float() - b.float()).abs().max()) if a.shape == b.shape else float("inf")


def _same_text(text: str, official_texts: list[str]) -> bool:
    """Our prompt string equals what the official code tokenized (its non-empty parts around images)."""
    if text.startswith("<s>") and len(official_texts) == 1:
        return text == official_texts[0]
    return [t for t in text.split("<ImageHere>") if t] == official_texts


def compare(work: Path) -> bool:
    """Our side against official.pt; prints one line per case, True when all are within target."""
    import torch

    from studio.families.xcomposer2 import XComposer2Family

    ref = torch.load(work / "official.pt", weights_only=False)
    family = XComposer2Family()
    parts = family.load(work / "ckpt", torch.float32, lambda f, s: None)
    ok = True
    for (name, _, spec), theirs in zip(CASES, ref["cases"]):
        ours = our_case(family, parts, work, spec, theirs["next"])
        same_ids, same_mask = ours["ids"] == theirs["ids"], ours["mask"] == theirs["mask"]
        same_text = _same_text(ours["text"], theirs["texts"])
        pix = max([_max_diff(a, b) for a, b in zip(ours["pixels"], theirs["pixels"])] or [0.0])
        logit = _max_diff(ours["logits"], theirs["logits"])
        last, step = _max_diff(ours["last"], theirs["logits"][-1]), _max_diff(ours["step"], theirs["step"])
        plain = _max_diff(ours["plain"], theirs["logits"])
        good = same_ids and same_mask and same_text and pix == 0.0 and max(logit, last, step) <= 1e-4
        ok &= good
        top = float(theirs["logits"].abs().max())
        print(f"[{'ok' if good else 'FAIL'}] {name}: {len(ours['ids'])} ids equal={same_ids}, image mask equal="
              f"{same_mask} ({sum(ours['mask'])} image positions), prompt text equal={same_text}; "
              f"pixel diff {pix:.3g}; logits max abs diff over all positions {logit:.3g} (|logits| ≤ {top:.3g}; "
              f"{plain:.3g} with the adapters off); "
              f"{ours['decoder']} chunked prefill last-position diff {last:.3g}, decode step diff {step:.3g}")
    return ok and check_mixed_resize(work, ref)


def check_mixed_resize(work: Path, ref: dict) -> bool:
    """A 300×800 image (one side grows, the other shrinks): ours vs the official env, and vs torchvision here."""
    import PIL
    import torch
    from PIL import Image

    from studio.families.xcomposer_vision import preprocess

    image = Image.open(work / "mixed.png").convert("RGB")
    ours = preprocess(image, 490)
    across = _max_diff(ours, ref["mixed"])
    try:
        from torchvision import transforms
    except ImportError:
        print(f"[info] 300×800 image: pixel diff {across:.3g} against Pillow {ref['pillow']} (ours {PIL.__version__})")
        return True
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    tv = transforms.Compose([transforms.Resize((490, 490), interpolation=transforms.InterpolationMode.BICUBIC),
                             transforms.ToTensor(), transforms.Normalize(mean, std)])
    here = _max_diff(ours, tv(image))
    print(f"[{'ok' if here == 0.0 else 'FAIL'}] 300×800 image: pixel diff {here:.3g} against the official torchvision "
          f"transform on the same Pillow ({PIL.__version__}); {across:.3g} against the official env's Pillow "
          f"{ref['pillow']} (Pillow versions resample differently when one side grows and the other shrinks)")
    return here == 0.0 and bool(torch.isfinite(ours).all())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, required=True, help="folder with the official XComposer2-VL .py files")
    ap.add_argument("--official-python", default=sys.executable, help="python of the official environment")
    ap.add_argument("--keep", type=Path, help="work folder to use and keep (default: a temporary one)")
    ap.add_argument("--official-side", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.official_side:
        official_side(args.official_side, args.official.resolve())
        return 0
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="xcomposer2-parity-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        write_inputs(work)
        subprocess.run([args.official_python, __file__, "--official", str(args.official), "--official-side",
                        str(work)], check=True, cwd=str(work))
        return 0 if compare(work) else 1


if __name__ == "__main__":
    sys.exit(main())
