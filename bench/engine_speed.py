"""HF engine speed levers on the embedded SmolLM2-135M (CPU): which decode path is fastest, and
whether it still gives the same greedy tokens as plain `generate` in float32.

Run:  HF_HUB_OFFLINE=1 python bench/engine_speed.py [--new-tokens 128] [--skip-compile]
Out:  bench/results/engine_speed.json and bench/results/engine_speed.png

Levers, each decoding --new-tokens greedy tokens (EOS suppressed so every lever does the same work):
  generate-*        transformers' generate (fp32 is the baseline and the reference tokens)
  loop-*            our loop over the model's own forward (HFForwardDecoder)
  fast-*            our lean Llama step (FastLlamaDecoder); fast-bf16 is the engine's CPU default
  *-1thread         the same with torch.set_num_threads(1)
  fast-bf16-compiled   forward_one under torch.compile(dynamic=True) (inductor), compile time reported
  static-compiled-bf16 HF StaticCache + torch.compile of the model's one-token forward
  engine.stream *   the real engine (default config): greedy, and the config's sampling defaults
Load: cold (empty GGUF cache: dequantise + write cache) vs warm (cache), each in a fresh process.
Numbers vary ±15% run to run on a shared 2-core VM; the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results"
STATIC_LEN = 512
PROMPTS = [
    "Write a story about a cat.",
    "Explain photosynthesis in simple terms.",
    "请写一个 300 字的小故事",
    "List five prime numbers and explain why they are prime.",
]


def load_probe(cache_dir: str) -> None:
    """Child process: time imports, load_hf_engine and the first streamed token; print JSON."""
    t0 = time.perf_counter()
    from studio.config import load_config
    from studio.core.types import GenParams, Message
    from studio.engines.base import generate
    from studio.engines.base import LoadContext, Placement
    from studio.engines.hf import load_hf_engine
    import torch  # noqa: F401  (counted as import time)
    import transformers  # noqa: F401

    t1 = time.perf_counter()
    cfg = load_config().engines["chat"]
    engine = load_hf_engine(cfg, LoadContext("chat", Placement("cpu"), Path(cache_dir), lambda f, t: None))
    t2 = time.perf_counter()
    first = None
    for delta in generate(engine, [Message.of("user", PROMPTS[0])], GenParams(max_new_tokens=8, do_sample=False)):
        if first is None and delta.text:
            first = time.perf_counter() - t2
    print(json.dumps({"imports_s": t1 - t0, "load_s": t2 - t1, "total_s": t2 - t0,
                      "engine_load_s": engine.loaded.seconds, "source": engine.loaded.source,
                      "first_token_s": first, "info": engine.info().extra}))


def probe(cache_dir: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--load-probe", str(cache_dir)],
                         capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def prompt_ids(tokenizer, text: str) -> list[int]:
    from studio.core.types import Message
    from studio.families.hf_chat_template import HFChatTemplateFamily

    return HFChatTemplateFamily().encode(tokenizer, [Message.of("user", text)])


def run_generate(model, ids: list[int], n: int, onednn: bool = True) -> tuple[list[int], float, float]:
    """(tokens, first-token seconds, decode tok/s) for transformers' generate."""
    import torch

    x = torch.tensor([ids])
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=onednn):
        t0 = time.perf_counter()
        model.generate(x, max_new_tokens=1, do_sample=False)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = model.generate(x, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        total = time.perf_counter() - t0
    return out[0, len(ids):].tolist(), first, (n - 1) / max(total - first, 1e-9)


def run_decoder(decoder, ids: list[int], n: int, stop_ids: list[int]) -> tuple[list[int], float, float]:
    """(tokens, first-token seconds, decode tok/s) for one of our decoders, EOS suppressed."""
    import torch

    def pick(logits):
        logits[stop_ids] = -float("inf")  # like min_new_tokens: every lever does n tokens
        return int(logits.argmax())

    with torch.inference_mode():
        t0 = time.perf_counter()
        decoder.start(len(ids) + n)
        tokens = [pick(decoder.prefill(ids, lambda: False))]
        first = time.perf_counter() - t0
        t1 = time.perf_counter()
        for _ in range(n - 1):
            tokens.append(pick(decoder.step(tokens[-1])))
        rate = (n - 1) / (time.perf_counter() - t1)
    decoder.release()
    return tokens, first, rate


def run_static_compiled(model, ids: list[int], n: int, stop_ids: list[int]) -> tuple[list[int], float, float]:
    """HF StaticCache + torch.compile of the one-token forward (the recipe from the transformers docs)."""
    import torch
    from transformers import StaticCache

    def one(token, pos, cache):
        out = model(input_ids=token, position_ids=pos[None], cache_position=pos,
                    past_key_values=cache, use_cache=True)
        return out.logits[0, -1].float()

    step = getattr(model, "_bench_static_step", None) or torch.compile(one, fullgraph=True, dynamic=False)
    model._bench_static_step = step
    with torch.inference_mode():
        # One fixed length for every prompt: a new length would mean a new compile.
        cache = StaticCache(config=model.config, max_cache_len=STATIC_LEN)
        t0 = time.perf_counter()
        out = model(input_ids=torch.tensor([ids]), past_key_values=cache, use_cache=True,
                    cache_position=torch.arange(len(ids)))
        logits = out.logits[0, -1].float()
        logits[stop_ids] = -float("inf")
        tokens = [int(logits.argmax())]
        first = time.perf_counter() - t0
        t1 = time.perf_counter()
        with torch.backends.mkldnn.flags(enabled=False):
            for i in range(n - 1):
                logits = step(torch.tensor([[tokens[-1]]]), torch.tensor([len(ids) + i]), cache)
                logits[stop_ids] = -float("inf")
                tokens.append(int(logits.argmax()))
        rate = (n - 1) / (time.perf_counter() - t1)
    return tokens, first, rate


def agreement(tokens: list[int], reference: list[int]) -> int:
    """How many leading tokens equal the reference."""
    return next((i for i, (a, b) in enumerate(zip(tokens, reference)) if a != b), min(len(tokens), len(reference)))


def measure(name: str, fn, prompts_ids, refs, repeats: int = 2) -> dict:
    """Speed on prompt 0 (best of `repeats`) and greedy agreement with the fp32 reference on all prompts."""
    import torch

    t0 = time.perf_counter()
    first_tokens, _, _ = fn(prompts_ids[0])  # warm-up (and compile, for compiled levers)
    warmup = time.perf_counter() - t0
    runs = [fn(prompts_ids[0]) for _ in range(repeats)]
    agree = [agreement(first_tokens, refs[0])]
    agree += [agreement(fn(ids)[0], ref) for ids, ref in zip(prompts_ids[1:], refs[1:])]
    row = {"lever": name, "tok_s": max(r[2] for r in runs), "tok_s_runs": [round(r[2], 2) for r in runs],
           "first_token_s": min(r[1] for r in runs), "agree_with_fp32_generate": agree,
           "warmup_s": round(warmup, 2), "threads": torch.get_num_threads()}
    print(f"{name:24s} {row['tok_s']:6.1f} tok/s  first token {row['first_token_s'] * 1000:6.0f} ms  "
          f"agree {agree}  (warm-up {warmup:.1f} s)", flush=True)
    return row


def levers(cache: Path, n: int, skip_compile: bool) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from studio.engines.hf_decode import FastLlamaDecoder, HFForwardDecoder

    tok = AutoTokenizer.from_pretrained(cache, local_files_only=True)
    fp32 = AutoModelForCausalLM.from_pretrained(cache, dtype=torch.float32, local_files_only=True).eval()
    bf16 = AutoModelForCausalLM.from_pretrained(cache, dtype=torch.bfloat16, local_files_only=True).eval()
    stops = [tok.eos_token_id]
    ids = [prompt_ids(tok, p) for p in PROMPTS]
    refs = [run_generate(fp32, x, n)[0] for x in ids]
    fast32, fast16 = FastLlamaDecoder(fp32), FastLlamaDecoder(bf16)
    rows = [
        measure("generate-fp32", lambda x: run_generate(fp32, x, n), ids, refs),
        measure("generate-bf16", lambda x: run_generate(bf16, x, n), ids, refs),
        measure("generate-bf16-onednn-off", lambda x: run_generate(bf16, x, n, onednn=False), ids, refs),
        measure("loop-fp32", lambda x: run_decoder(HFForwardDecoder(fp32), x, n, stops), ids, refs),
        measure("loop-bf16", lambda x: run_decoder(HFForwardDecoder(bf16), x, n, stops), ids, refs),
        measure("fast-fp32", lambda x: run_decoder(fast32, x, n, stops), ids, refs),
        measure("fast-bf16 (default)", lambda x: run_decoder(fast16, x, n, stops), ids, refs),
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows.append(measure("fast-bf16-1thread", lambda x: run_decoder(fast16, x, n, stops), ids, refs))
    torch.set_num_threads(threads)
    if not skip_compile:
        # A fresh inductor cache: the warm-up time is then a first-ever compile, as a user's
        # first start would see (later starts reuse the on-disk cache and compile faster).
        inductor = tempfile.mkdtemp(prefix="engine-speed-inductor-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = inductor
        try:
            rows.append(compiled_lever(bf16, ids, refs, n, stops))
            static = lambda x: run_static_compiled(bf16, x, n, stops)  # noqa: E731
            rows.append(measure("static-compiled-bf16", static, ids, refs))
        finally:
            shutil.rmtree(inductor, ignore_errors=True)
    return rows


def compiled_lever(model, ids, refs, n: int, stops) -> dict:
    """FastLlamaDecoder.forward_one compiled by inductor (dynamic shapes: one graph for every n)."""
    import torch

    from studio.engines.hf_decode import FastLlamaDecoder

    decoder = FastLlamaDecoder(model)
    decoder.forward_one = torch.compile(decoder.forward_one, dynamic=True)
    return measure("fast-bf16-compiled", lambda x: run_decoder(decoder, x, n, stops), ids, refs)


def engine_rows(cache_root: Path, n: int) -> list[dict]:
    """The real engine (default config) through Engine.stream: greedy and the config's sampling."""
    from studio.config import load_config
    from studio.core.types import GenParams, Message
    from studio.engines.base import generate
    from studio.engines.base import LoadContext, Placement
    from studio.engines.hf import load_hf_engine

    cfg = load_config().engines["chat"]
    engine = load_hf_engine(cfg, LoadContext("chat", Placement("cpu"), cache_root, lambda f, t: None))
    rows = []
    sampling = cfg.defaults.model_copy(update={"max_new_tokens": n, "seed": 0})
    for name, params in (("engine.stream greedy", GenParams(max_new_tokens=n, do_sample=False)),
                         ("engine.stream sampling", sampling)):
        best = None
        for _ in range(2):
            t0, first = time.perf_counter(), None
            for delta in generate(engine, [Message.of("user", PROMPTS[0])], params):
                first = first or (time.perf_counter() if delta.text else None)
            end = time.perf_counter()
            rate = (delta.completion_tokens - 1) / (end - first)
            if best is None or rate > best["tok_s"]:
                best = {"lever": name, "tok_s": rate, "first_token_s": first - t0,
                        "completion_tokens": delta.completion_tokens, "finish": delta.finish_reason}
        print(f"{name:24s} {best['tok_s']:6.1f} tok/s  first token {best['first_token_s'] * 1000:6.0f} ms  "
              f"({best['completion_tokens']} tokens, {best['finish']})", flush=True)
        rows.append(best)
    engine.close()
    return rows


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["levers"] + result["engine"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 1]})
    names = [r["lever"] for r in rows]
    colours = ["#d62728" if "default" in n else "#2ca02c" if n.startswith("engine") else "#1f77b4" for n in names]
    ax1.barh(names, [r["tok_s"] for r in rows], color=colours)
    ax1.axvline(50, color="grey", linestyle="--", linewidth=1)
    ax1.invert_yaxis()
    ax1.set_xlabel(f"greedy decode tok/s ({result['new_tokens']} new tokens, best of 2)")
    ax1.set_title("SmolLM2-135M on " + result["machine"]["cpu"])
    for i, r in enumerate(rows):
        ax1.text(r["tok_s"] + 0.5, i, f"{r['tok_s']:.1f}", va="center", fontsize=8)
    load = result["load"]
    ax2.bar(["cold\n(dequantise)", "warm\n(cache)"], [load["cold"]["total_s"], load["warm"]["total_s"]],
            color=["#ff7f0e", "#2ca02c"])
    ax2.bar(["cold\n(dequantise)", "warm\n(cache)"], [load["cold"]["imports_s"], load["warm"]["imports_s"]],
            color="#bbbbbb", label="imports")
    ax2.set_ylabel("seconds to a ready engine (fresh process)")
    ax2.legend()
    ax2.set_title("load time")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def machine() -> dict:
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "loadavg_start": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--skip-compile", action="store_true", help="skip the torch.compile levers (minutes)")
    parser.add_argument("--load-probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_probe:
        return load_probe(args.load_probe)
    result = {"new_tokens": args.new_tokens, "machine": machine(), "prompts": PROMPTS}
    with tempfile.TemporaryDirectory(prefix="engine-speed-cache-") as tmp:
        cold = probe(Path(tmp))
        warm = probe(Path(tmp))
        print(f"load cold {cold['total_s']:.1f} s (imports {cold['imports_s']:.1f} s), "
              f"warm {warm['total_s']:.1f} s (imports {warm['imports_s']:.1f} s)", flush=True)
        result["load"] = {"cold": cold, "warm": warm}
        cache = next(p for p in Path(tmp).iterdir() if p.is_dir() and not p.name.startswith("."))
        result["levers"] = levers(cache, args.new_tokens, args.skip_compile)
        result["engine"] = engine_rows(Path(tmp), args.new_tokens)
    result["machine"]["loadavg_end"] = os.getloadavg()[0]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "engine_speed.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    plot(result, OUT / "engine_speed.png")
    print(f"wrote {OUT / 'engine_speed.json'} and {OUT / 'engine_speed.png'}")


if __name__ == "__main__":
    main()
