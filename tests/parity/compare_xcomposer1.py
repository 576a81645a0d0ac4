"""InternLM-XComposer v1: our native loader, prompt and image side against the official code (prints numbers).

Not a test: it needs the official code and a Python environment that runs it (transformers 4.33,
the version the remote code targets: its tokenizer does not load under 4.37; torch, torchvision,
timm 0.4.12, einops, sentencepiece). Usage:

    python tests/parity/compare_xcomposer1.py --official DIR --demo DEMO --official-python PYTHON [--keep WORKDIR]

DIR is InternLM-XComposer 3e8c790's `huggingface/internlm-xcomposer/` (a package folder: its
files import each other relatively); DEMO holds that commit's `demo_asset/conversation.py`.
The official code hard-codes the real sizes, so on its side only, at run time: `create_eva_vit_g`
builds the tiny EVA tower (its own VisionTransformer class, official mlp_ratio and eps, width 176,
2 blocks, 2 heads) in fp32 instead of converting it to fp16; `BertConfig()` in init_qformer gives
the tiny BERT (width 128, 2 layers, 2 heads, 256 intermediate); the 4096-wide image flags take the
tiny LM width; `config.device` is "cpu"; the model is made fp32 before the checkpoint is loaded.
The chat prompt is built with the demo's CONV_VISION_7132_v2 as chat_ask fills it, and embedded
as the demo's get_context_emb does (a few lines repeated here: web_demo.py imports gradio).
Both sides read the same tiny fp32 checkpoint (`tests/support/tiny_xcomposer1.py`) and images.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NEW_TOKENS = 12
TAG = "<Img><ImageHere></Img>"
# Each: a list of turns (image file or None, user text, answer or None for the last).
CONVERSATIONS = [
    ("one image, Chinese question", [("a.png", "请描述这张图片。", None)]),
    ("one image, then a text turn", [("b.png", "What is in the picture?", "A red square."), (None, "Why red?", None)]),
    ("text only", [(None, "你好，请介绍一下你自己。", None)]),
    ("two images in two turns", [("a.png", "这是什么？", "一只猫。"), ("b.png", "And this one?", None)]),
]


def _images(work: Path) -> None:
    """Two small PNGs with structure (gradients), sizes that resize the same on any Pillow."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:336, 0:448]
    Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype("uint8")).save(work / "a.png")
    Image.fromarray(np.stack([(x * 2) % 256, 128 + 0 * x, (y * 3) % 256], -1).astype("uint8")[:224, :224]).save(work / "b.png")


def _messages(work: Path, turns):
    from studio.core.types import ImagePart, Message, TextPart
    from studio.images import load_image

    msgs = []
    for image, text, answer in turns:
        parts = ([ImagePart(load_image(work / image).image)] if image else []) + [TextPart(text)]
        msgs.append(Message("user", parts))
        if answer is not None:
            msgs.append(Message.of("assistant", answer))
    return msgs


# ---------------------------------------------------------------- official side (official environment)


def _official_model(work: Path, official: Path):
    """The official InternLMXComposerForCausalLM at the tiny sizes (see the module docstring), fp32, loaded."""
    import importlib
    from functools import partial

    import torch
    from torch import nn

    mod = importlib.import_module(f"{official.name}.modeling_InternLM_XComposer")
    cfgmod = importlib.import_module(f"{official.name}.configuration_InternLM_XComposer")
    sampler = importlib.import_module(f"{official.name}.modeling_perceive_sampler")
    mod.create_eva_vit_g = lambda *a, **k: mod.VisionTransformer(
        img_size=224, patch_size=14, use_mean_pooling=False, embed_dim=176, depth=2, num_heads=2,
        mlp_ratio=4.3637, qkv_bias=True, drop_path_rate=0.4, norm_layer=partial(nn.LayerNorm, eps=1e-6))
    mod.BertConfig = lambda: sampler.BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                                                intermediate_size=256)
    config = cfgmod.InternLMXComposerConfig.from_pretrained(str(work / "ckpt"))
    config.device = "cpu"
    model = mod.InternLMXComposerForCausalLM(config)
    hidden = config.hidden_size
    model.flag_image_start = nn.Parameter(torch.zeros([1, 1, hidden]), requires_grad=False)
    model.flag_image_end = nn.Parameter(torch.zeros([1, 1, hidden]), requires_grad=False)
    model = model.float().eval()
    state = {}
    for shard in sorted((work / "ckpt").glob("pytorch_model*.bin")):
        state.update(torch.load(shard, map_location="cpu"))
    result = model.load_state_dict(state, strict=False)
    return model, (list(result.missing_keys), list(result.unexpected_keys))


def _official_embeds(model, tok, conv_template, turns, work: Path):
    """The demo's prompt embeddings for `turns` (chat_ask + get_context_emb), and its token ids (-1 = image)."""
    import torch
    from PIL import Image

    state, img_list = conv_template.copy(), []
    for image, text, answer in turns:
        if image:
            pixels = model.vis_processor(Image.open(work / image).convert("RGB")).unsqueeze(0)
            img_list.append(model.encode_img(pixels))
            state.append_message(state.roles[0], [TAG, image])
        if state.messages and state.messages[-1][0] == state.roles[0] and isinstance(state.messages[-1][1], list):
            state.messages[-1][1][0] = " ".join([state.messages[-1][1][0], text])
        else:
            state.append_message(state.roles[0], text)
        state.append_message(state.roles[1], answer)
    segs = state.get_prompt().split(TAG)
    seg_ids = [tok(s, return_tensors="pt", add_special_tokens=i == 0).input_ids for i, s in enumerate(segs)]
    embeds = [model.internlm_model.model.embed_tokens(t) for t in seg_ids]
    mixed = [e for pair in zip(embeds[:-1], img_list) for e in pair] + [embeds[-1]]
    ids = []
    for i, t in enumerate(seg_ids):
        ids += t[0].tolist() + ([-1] * img_list[i].shape[1] if i < len(img_list) else [])
    return torch.cat(mixed, dim=1), ids, state.get_prompt(), img_list


def official_side(work: Path, official: Path, demo: Path) -> None:
    """Prompts, ids, image features, logits and greedy tokens of the official code, saved to files."""
    import importlib

    import torch
    from PIL import Image

    sys.path[:0] = [str(demo), str(official.parent)]
    conversation = importlib.import_module("conversation")
    tokmod = importlib.import_module(f"{official.name}.tokenization_InternLM_XComposer")
    model, (missing, unexpected) = _official_model(work, official)
    tok = tokmod.InternLMXComposerTokenizer.from_pretrained(str(work / "ckpt"))
    model.tokenizer = tok
    out = {"missing": missing, "unexpected": unexpected, "cases": []}
    with torch.no_grad():
        for name in ("a.png", "b.png"):
            pixels = model.vis_processor(Image.open(work / name).convert("RGB")).unsqueeze(0)
            torch.save({"pixels": pixels[0], "features": model.encode_img(pixels)[0]}, work / f"official-{name}.pt")
        for c, (_, turns) in enumerate(json.loads((work / "job.json").read_text("utf-8"))["conversations"]):
            embeds, ids, prompt, _ = _official_embeds(model, tok, conversation.CONV_VISION_7132_v2, turns, work)
            lm = model.internlm_model
            torch.save(lm(inputs_embeds=embeds).logits[0], work / f"official-logits{c}.pt")
            step = lm(inputs_embeds=embeds, use_cache=True)
            new, past = [], step.past_key_values
            for _ in range(NEW_TOKENS):
                new.append(int(step.logits[0, -1].argmax()))
                step = lm(input_ids=torch.tensor([[new[-1]]]), past_key_values=past, use_cache=True)
                past = step.past_key_values
            stop = next((k for k, t in enumerate(new) if t in (2, 103027, 103028)), len(new))
            out["cases"].append({"ids": ids, "prompt": prompt, "greedy": new,
                                 "text": tok.decode(new[:stop], skip_special_tokens=True)})
    (work / "official.json").write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")


# ---------------------------------------------------------------- our side and the comparison


def our_side(work: Path, official: dict) -> None:
    """Our family, loader and engine on the same inputs; prints the comparison."""
    import torch

    from studio.families.xcomposer1 import XComposer1Family
    from studio.families.xcomposer_vision import preprocess
    from studio.images import load_image

    print(f"official load_state_dict: missing {official['missing']}, unexpected {official['unexpected']}")
    family = XComposer1Family()
    parts = family.load(work / "ckpt", torch.float32, lambda f, t: None)
    for name in ("a.png", "b.png"):
        ref = torch.load(work / f"official-{name}.pt")
        pixels = preprocess(load_image(work / name).image, 224)
        feats = parts.vision.features(pixels[None])[0]
        print(f"[{name}] pixel diff {(pixels - ref['pixels']).abs().max().item():.3g}; image features "
              f"{tuple(feats.shape)} max |diff| {(feats - ref['features']).abs().max().item():.3e}"
              f" (scale {ref['features'].abs().max().item():.2f})")
    for c, (label, turns) in enumerate(CONVERSATIONS):
        ref = official["cases"][c]
        msgs = _messages(work, turns)
        prompt = family.prepare(parts.tokenizer, msgs)
        ours_ids = [-1 if i == 0 else i for i in prompt.ids]
        text_same = family.build_prompt(parts.tokenizer, msgs) == ref["prompt"]
        embeds, _ = parts.vision.embed(parts.lm, prompt)
        with torch.no_grad():
            logits = parts.lm(inputs_embeds=embeds).logits[0]
            step = parts.lm(inputs_embeds=embeds, use_cache=True)
            new, past = [], step.past_key_values
            for _ in range(NEW_TOKENS):
                new.append(int(step.logits[0, -1].argmax()))
                step = parts.lm(input_ids=torch.tensor([[new[-1]]]), past_key_values=past, use_cache=True)
                past = step.past_key_values
        theirs = torch.load(work / f"official-logits{c}.pt")
        diff = (logits - theirs).abs().max().item() if logits.shape == theirs.shape else float("nan")
        print(f"[{label}] {len(ours_ids)} ids equal={ours_ids == ref['ids']}, prompt text equal={text_same}; "
              f"logits max |diff| over all positions {diff:.3e} (|logits| <= {theirs.abs().max().item():.1f}); "
              f"greedy {NEW_TOKENS} tokens equal={new == ref['greedy']}")
        if ours_ids != ref["ids"]:
            print(f"    ours     {ours_ids}\n    official {ref['ids']}")
    _engine_check(work, official)


def _engine_check(work: Path, official: dict) -> None:
    """Greedy text through our HF engine (family auto) vs the official greedy continuation."""
    from tests.support.engine_calls import GenerationRequest, generate
    from studio.core.types import GenParams
    from studio.engines.base import LoadContext, Placement
    from studio.engines.hf import load_hf_engine
    from studio.engines.hf_loading import HFOptions

    cfg = HFOptions(model_path=str(work / "ckpt"), family="auto", device="cpu", dtype="float32")
    engine = load_hf_engine(cfg, LoadContext("chat", Placement("cpu"), work / "cache", lambda f, t: None))
    try:
        params = GenParams(max_new_tokens=NEW_TOKENS, do_sample=False, repetition_penalty=1.0)
        same = 0
        for c, (_, turns) in enumerate(CONVERSATIONS):
            text = "".join(d.text for d in generate(engine, GenerationRequest(_messages(work, turns), params)))
            same += text == official["cases"][c]["text"]
            if text != official["cases"][c]["text"]:
                print(f"    engine {text!r}\n    official {official['cases'][c]['text']!r}")
        print(f"[engine, decoder {engine.decoder.name}, family auto -> {engine.family.name}] greedy text equals "
              f"the official continuation: {same}/{len(CONVERSATIONS)}")
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="huggingface/internlm-xcomposer/ of 3e8c790")
    parser.add_argument("--demo", type=Path, required=True, help="folder with demo_asset/conversation.py of 3e8c790")
    parser.add_argument("--official-python", default="/work/scratch/official-venv/bin/python")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    parser.add_argument("--side", choices=["ours", "official"], default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "official":
        official_side(args.work, args.official.resolve(), args.demo.resolve())
        return
    sys.path.insert(0, str(ROOT))
    from tests.support.tiny_xcomposer1 import write_tiny_xcomposer1

    work = args.keep or Path(tempfile.mkdtemp(prefix="parity-xcomposer1-"))
    work.mkdir(parents=True, exist_ok=True)
    write_tiny_xcomposer1(work / "ckpt", seed=7)
    _images(work)
    (work / "job.json").write_text(json.dumps({"conversations": CONVERSATIONS}, ensure_ascii=False), "utf-8")
    subprocess.run([args.official_python, __file__, "--side", "official", "--work", str(work), "--official",
                    str(args.official.resolve()), "--demo", str(args.demo.resolve())], check=True, cwd=work)
    our_side(work, json.loads((work / "official.json").read_text(encoding="utf-8")))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
