"""Single-stream decode speed of the transformers engine on a GPU: eager lean step vs CUDA graphs.

Run (on the GPU machine):
  HF_HUB_OFFLINE=1 python bench/decode_gpu.py --tokenizer /path/to/internlm2/tokenizer.model
Out:  bench/results/decode_gpu.json (+ decode_gpu.png where matplotlib is installed; `--plot` redraws it)

In one run, on InternLM2-Chat-1.8B's shape (random bf16 weights, bench/serving_model.py):
  limit            weight bytes / measured device copy bandwidth: the single stream's ceiling
  engine eager     the studio's HF engine with cuda_graphs: false (the lean step, launched per token)
  engine graphs    the same engine with the step captured as CUDA graphs (the default on a GPU)
  engine compiled  cuda_graph_compile: true — the step compiled by inductor, then captured (compile time shown)
  generate static  transformers' generate with cache_implementation="static" (its own compiled decode)
Each engine row streams 256 greedy tokens through Engine.stream, best of three; tok/s counts the tokens
after the first over the time after the first. Greedy tokens of graphs vs eager are compared.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench.serving_model import LM_1_8B, TINY, write_checkpoint  # noqa: E402

PROMPT = "Please write a long, detailed story about a lighthouse keeper and the ships she guides home."


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write of a 2 GiB buffer), best of five."""
    import torch

    src = torch.empty(2 * 1024**3, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    best = 0.0
    for _ in range(5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        dst.copy_(src)
        torch.cuda.synchronize()
        best = max(best, 2 * src.numel() / (time.perf_counter() - t0))
    del src, dst
    torch.cuda.empty_cache()
    return best


def engine_row(folder: Path, graphs: bool, n: int, compiled: bool = False) -> tuple[dict, list[int]]:
    """The studio's engine on `folder`: tok/s, first token, and the greedy token ids."""
    import torch

    from studio.core.types import GenParams, Message
    from studio.engines.base import LoadContext, Placement, generate
    from studio.engines.hf import load_hf_engine
    from studio.engines.hf_loading import HFOptions

    cfg = HFOptions(model_path=str(folder), family="hf_chat_template", device="cuda", dtype="bfloat16",
                    cuda_graphs=graphs, cuda_graph_compile=compiled,
                    max_batch_size=1)  # one stream: the single-sequence step, not the batch's
    t0 = time.perf_counter()
    engine = load_hf_engine(cfg, LoadContext("chat", Placement("cuda", 1), Path(tempfile.mkdtemp()),
                                             lambda f, t: None))
    load_s = time.perf_counter() - t0
    params = GenParams(max_new_tokens=n, do_sample=False, repetition_penalty=1.0)
    best, ids = None, []
    for _ in range(3):
        start, first, text = time.perf_counter(), None, ""
        for delta in generate(engine, [Message.of("user", PROMPT)], params):
            if delta.text and first is None:
                first = time.perf_counter()
            text += delta.text
        end = time.perf_counter()
        rate = (delta.completion_tokens - 1) / (end - first)
        if best is None or rate > best["tok_s"]:
            lever = "engine compiled" if compiled else "engine graphs" if graphs else "engine eager"
            best = {"lever": lever, "tok_s": round(rate, 1),
                    "first_token_ms": round((first - start) * 1000, 1), "tokens": delta.completion_tokens,
                    "decoder": engine.info().extra["decoder"],
                    "graph_capture_s": engine.info().extra["graph_capture_s"], "load_s": round(load_s, 1)}
        ids = engine.tokenizer.encode(text, add_special_tokens=False)
    best["peak_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 2)
    best["plan_gib"] = round(engine.loaded.plan.need / 1024**3, 2) if engine.loaded.plan else None
    engine.close()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return best, ids


def generate_static_row(folder: Path, n: int) -> dict:
    """transformers' generate with its static cache (and its compiled decode step)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).cuda()
    ids = tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"].cuda()
    best = 0.0
    for _ in range(3):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             cache_implementation="static")
        torch.cuda.synchronize()
        best = max(best, (out.shape[1] - ids.shape[1]) / (time.perf_counter() - t0))
    del model
    torch.cuda.empty_cache()
    return {"lever": "generate static", "tok_s": round(best, 1)}


def plot(result: dict, out: Path) -> None:
    """Bars of tok/s per lever with the bandwidth limit as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar([r["lever"] for r in rows], [r["tok_s"] for r in rows], color="#3b82f6")
    ax.axhline(result["limit_tok_s"], color="#ef4444", linestyle="--", label="bandwidth limit")
    ax.axhline(result["limit_tok_s"] / 2, color="#f59e0b", linestyle=":", label="target (half the limit)")
    for i, r in enumerate(rows):
        ax.text(i, r["tok_s"], f"{r['tok_s']:.0f}", ha="center", va="bottom")
    ax.set_ylabel("tok/s, one stream")
    ax.set_title(f"InternLM2-1.8B shape, bf16, {result['gpu']}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", help="the real InternLM2 tokenizer.model")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model: a dry run of the script")
    ap.add_argument("--skip-generate", action="store_true")
    ap.add_argument("--plot", action="store_true", help="only redraw the png from the JSON")
    args = ap.parse_args()
    out = Path(args.out)
    if args.plot:
        plot(json.loads((out / "decode_gpu.json").read_text()), out / "decode_gpu.png")
        return
    import torch

    shape = TINY if args.tiny else LM_1_8B
    folder = write_checkpoint(Path(tempfile.mkdtemp()) / "lm", Path(args.tokenizer), shape)
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    bandwidth = copy_bandwidth()
    eager, eager_ids = engine_row(folder, False, args.new_tokens)
    graphs, graph_ids = engine_row(folder, True, args.new_tokens)
    compiled, compiled_ids = engine_row(folder, True, args.new_tokens, compiled=True)
    rows = [eager, graphs, compiled]
    if not args.skip_generate:
        rows.append(generate_static_row(folder, args.new_tokens))
    def agree(a: list[int], b: list[int]) -> int:
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

    result = {"gpu": torch.cuda.get_device_name(), "weights_gb": round(weights / 1e9, 2),
              "copy_gb_s": round(bandwidth / 1e9), "limit_tok_s": round(bandwidth / weights, 1),
              "new_tokens": args.new_tokens, "rows": rows,
              "graphs_over_eager": round(graphs["tok_s"] / eager["tok_s"], 2),
              "graphs_over_limit": round(graphs["tok_s"] / (bandwidth / weights), 2),
              "compiled_over_limit": round(compiled["tok_s"] / (bandwidth / weights), 2),
              "greedy_equal_prefix_graphs_vs_eager": agree(eager_ids, graph_ids),
              "greedy_equal_prefix_compiled_vs_eager": agree(eager_ids, compiled_ids),
              "greedy_tokens_compared": min(len(eager_ids), len(graph_ids))}
    out.mkdir(parents=True, exist_ok=True)
    (out / "decode_gpu.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    try:
        plot(result, out / "decode_gpu.png")
    except ImportError:
        print("matplotlib is not installed here: run `python bench/decode_gpu.py --plot` where it is")


if __name__ == "__main__":
    main()
