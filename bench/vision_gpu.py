"""The three InternLM families at their real sizes on one GPU: load time, peak memory, tok/s.

Random weights in the official on-disk layouts (InternLM2-Chat-1.8B, InternVL2-2B,
InternLM-XComposer2-VL-1.8B), written here, loaded through the studio's HF engine with remote
code off, exactly as a user's checkpoint would be. Random weights cost the same FLOPs and bytes as
trained ones; stop tokens are ignored so every run decodes the same number of tokens.

Run (GPU machine):  python bench/vision_gpu.py --out $OUT [--new-tokens 128] [--work /tmp/ckpt]
Out:  vision_gpu.json in --out; then `python bench/vision_gpu.py --plot bench/results/vision_gpu.json`
      draws vision_gpu.png beside it (matplotlib, CPU machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LM_1_8B = dict(hidden_size=2048, num_attention_heads=16, num_key_value_heads=8, num_hidden_layers=24,
               intermediate_size=8192)
VIT_300M = dict(vision_hidden=1024, vision_layers=24, vision_heads=16, vision_intermediate=4096)
CLIP_L = dict(vision_hidden=1024, vision_layers=24, vision_intermediate=4096, plora_r=256)


def write(kind: str, folder: Path) -> Path:
    """A real-size random checkpoint of `kind` in its official layout (kept between runs)."""
    from tests.support.tiny_checkpoints import write_tiny_internlm2
    from tests.support.tiny_internvl2 import write_tiny_internvl2
    from tests.support.tiny_xcomposer2 import write_tiny_xcomposer2

    if (folder / "config.json").is_file():
        return folder
    if kind == "internlm2":
        return write_tiny_internlm2(folder, shards=2, vocab_size=92544, **LM_1_8B)
    if kind == "internvl2":
        return write_tiny_internvl2(folder, shards=2, vocab_size=92553, **VIT_300M, **LM_1_8B)
    return write_tiny_xcomposer2(folder, shards=2, vocab_size=92544, **CLIP_L, **LM_1_8B)


def picture(size=(1024, 768)):
    """A non-uniform photo-sized test image."""
    from PIL import Image

    img = Image.new("RGB", size, (200, 200, 200))
    for x in range(0, size[0], 64):
        for y in range(0, size[1], 64):
            img.paste((x % 256, y % 256, (x * y) % 256), (x, y, x + 32, y + 32))
    return img


def run_one(kind: str, folder: Path, new_tokens: int, max_tiles: int) -> dict:
    """Load through the engine, then one text and one image request, timed."""
    import torch

    from studio.engines.hf_loading import HFOptions
    from studio.core.types import GenParams, ImagePart, Message, TextPart
    from studio.engines.base import generate
    from studio.engines.base import LoadContext, Placement
    from studio.engines.hf import load_hf_engine

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    cfg = HFOptions(model_path=str(folder), family=kind, device="cuda", dtype="bfloat16", context_window=8192)
    ctx = LoadContext(kind, Placement("cuda", 1), folder.parent / "cache", lambda f, t: None)
    t0 = time.perf_counter()
    engine = load_hf_engine(cfg, ctx)
    load_s = time.perf_counter() - t0
    after_load = torch.cuda.max_memory_allocated() - base
    engine.stop_ids = set()  # random weights: decode the full length every time
    params = GenParams(max_new_tokens=new_tokens, do_sample=False, repetition_penalty=1.0)
    row = {"family": kind, "load_s": round(load_s, 2), "weights_gib": round(engine.info().memory_bytes / 2**30, 3),
           "peak_after_load_gib": round(after_load / 2**30, 3), "plan": engine.info().extra["memory_plan"],
           "decoder": engine.info().extra["decoder"]}
    cases = [("text", [Message.of("user", "Write a story about a cat.")])]
    if engine.accepts_images:
        cases.append(("image", [Message("user", [ImagePart(picture()), TextPart("Describe this image.")])]))
    for label, messages in cases:
        for attempt in ("warm", "timed"):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            first, n = None, 0
            for d in generate(engine, messages, params, max_tiles=max_tiles):
                if d.text and first is None:
                    first = time.perf_counter() - t0
                n = d.completion_tokens or n
            total = time.perf_counter() - t0
        row[f"{label}_prompt_tokens"] = engine.prepare(messages, params, max_tiles=max_tiles).prompt_tokens
        row[f"{label}_first_token_s"] = round(first or total, 4)
        row[f"{label}_tok_s"] = round((n - 1) / (total - (first or 0)), 1) if n > 1 else 0.0
        row[f"{label}_tokens"] = n
    row["peak_gib"] = round((torch.cuda.max_memory_allocated() - base) / 2**30, 3)
    engine.close()
    return row


def plot(json_path: Path) -> Path:
    """vision_gpu.png beside the JSON: tok/s and peak memory per family (run where matplotlib is)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(json_path).read_text(encoding="utf-8"))
    rows = data["rows"]
    names = [r["family"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    x = range(len(rows))
    a.bar([i - 0.2 for i in x], [r["text_tok_s"] for r in rows], 0.4, label="text prompt")
    a.bar([i + 0.2 for i in x], [r.get("image_tok_s", 0) for r in rows], 0.4, label="image prompt")
    a.set_xticks(list(x), names)
    a.set_ylabel("decode tok/s (1 stream, bf16)")
    a.legend()
    b.bar(names, [r["peak_gib"] for r in rows], color="tab:gray")
    b.set_ylabel("peak GPU memory (GiB)")
    fig.suptitle(f"Real-size random weights on {data['device']} (HF engine, remote code off)")
    fig.tight_layout()
    out = Path(json_path).with_suffix(".png")
    fig.savefig(out, dpi=110)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plot", help="only draw the PNG for an existing vision_gpu.json")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--work", default="/tmp/puyu-real-size")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--max-tiles", type=int, default=6)
    ap.add_argument("--only", nargs="*", default=["internlm2", "internvl2", "xcomposer2"])
    args = ap.parse_args()
    if args.plot:
        print(plot(Path(args.plot)))
        return
    import torch

    rows = []
    for kind in args.only:
        t0 = time.perf_counter()
        folder = write(kind, Path(args.work) / kind)
        print(f"{kind}: checkpoint written in {time.perf_counter() - t0:.1f} s", flush=True)
        row = run_one(kind, folder, args.new_tokens, args.max_tiles)
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "new_tokens": args.new_tokens, "max_tiles": args.max_tiles, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vision_gpu.json").write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
