"""Where the studio's lmdeploy engine object loses to the library's own batch (a GPU benchmark).

Same weights (bench/serving_model.py), same prompts, same pipeline; each round runs every caller once,
in turn, so that the host's noise falls on all of them alike:
- "library": one `stream_infer` call with the N conversations (lmdeploy's batch API, one consumer);
- "library-threads": N threads, each its own `stream_infer` call and session (no studio code);
- "async": N coroutines on the pipeline's own event loop calling its async engine (no thread bridge);
- "engine": the studio's engine object from N threads (what the chat UI and /v1 call);
- "engine-no-count": the same with the prompt counted by the length estimate instead of the chat template;
- "engine-stream-infer": the same reading each request through `Pipeline.stream_infer` (one response
  per token) instead of studio/engines/lmdeploy_stream.py's batches of whatever has arrived.
Rows are the median round by tok/s, with every round's figure and the CPU seconds this process and
the engine's own process spent per 1 000 tokens.

Run:  python bench/lmdeploy_callers.py --tokenizer tokenizer.model --users 8 32 --rounds 3 --out DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serving_direct import load, summary  # noqa: E402
from serving_model import LM_1_8B, prompt, write_checkpoint  # noqa: E402

CALLERS = ("library", "library-threads", "async", "engine", "engine-no-count", "engine-stream-infer")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Every process below `pid` (the engine's worker process and anything it started)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                kids.append(int(entry.name))
    return kids + [g for k in kids for g in children(k)]


def child_cpu_s() -> float:
    total = 0.0
    for pid in children(os.getpid()):
        try:
            total += cpu_s(pid)
        except OSError:
            pass
    return total


def gen_config(max_new: int):
    from lmdeploy import GenerationConfig

    return GenerationConfig(max_new_tokens=max_new, do_sample=False, ignore_eos=True)


def run_library(pipe, n: int, max_new: int, start: float):
    chats = [[{"role": "user", "content": prompt(i)}] for i in range(n)]
    firsts, tokens = [None] * n, [0] * n
    for r in pipe.stream_infer(chats, gen_config=gen_config(max_new)):
        if r.text and firsts[r.index] is None:
            firsts[r.index] = time.monotonic() - start
        tokens[r.index] = r.generate_token_len or tokens[r.index]
    return firsts, tokens


def run_library_threads(pipe, n: int, max_new: int, start: float):
    def one(i):
        first, tokens = None, 0
        for r in pipe.stream_infer([{"role": "user", "content": prompt(i)}], sessions=pipe.session(),
                                   gen_config=gen_config(max_new)):
            if r.text and first is None:
                first = time.monotonic() - start
            tokens = r.generate_token_len or tokens
        return first, tokens

    with ThreadPoolExecutor(n) as pool:
        out = list(pool.map(one, range(n)))
    return [o[0] for o in out], [o[1] for o in out]


def run_async(pipe, n: int, max_new: int, start: float):
    engine = pipe.async_engine

    async def one(i):
        first, tokens = None, 0
        request = await engine.preprocess(session_id=pipe.session(), messages=[{"role": "user", "content": prompt(i)}],
                                          gen_config=gen_config(max_new))
        async for out in engine.generate(request, stream_response=True):
            r = out.to_response(i)
            if r.text and first is None:
                first = time.monotonic() - start
            tokens = r.generate_token_len or tokens
        return first, tokens

    async def all_of():
        return await asyncio.gather(*(one(i) for i in range(n)))

    out = asyncio.run_coroutine_threadsafe(all_of(), pipe.internal_thread.loop).result()
    return [o[0] for o in out], [o[1] for o in out]


def run_engine(engine, n: int, max_new: int, start: float):
    from studio.core.types import GenParams, Message
    from studio.engines.base import generate

    def one(i):
        first, last = None, None
        for d in generate(engine, [Message.of("user", prompt(i))], GenParams(max_new_tokens=max_new, do_sample=False)):
            if d.text and first is None:
                first = time.monotonic() - start
            last = d
        return first, last.completion_tokens

    with ThreadPoolExecutor(n) as pool:
        out = list(pool.map(one, range(n)))
    return [o[0] for o in out], [o[1] for o in out]


def measure(engine, caller: str, n: int, max_new: int) -> dict:
    from studio.engines.openai_wire import estimate_tokens

    pipe = engine.pipe
    fn = {"library": lambda s: run_library(pipe, n, max_new, s),
          "library-threads": lambda s: run_library_threads(pipe, n, max_new, s),
          "async": lambda s: run_async(pipe, n, max_new, s),
          "engine": lambda s: run_engine(engine, n, max_new, s),
          "engine-no-count": lambda s: run_engine(engine, n, max_new, s),
          "engine-stream-infer": lambda s: run_engine(engine, n, max_new, s)}[caller]
    import studio.engines.lmdeploy_engine as lm

    reader = lm.read
    if caller == "engine-no-count":
        engine._count = lambda messages, max_tiles: estimate_tokens(messages)
    if caller == "engine-stream-infer":
        lm.read = lambda pipe, messages, sess, gen: pipe.stream_infer(messages, sessions=sess, gen_config=gen)
    try:
        own, child = cpu_s(os.getpid()), child_cpu_s()
        start = time.monotonic()
        firsts, tokens = fn(start)
        wall = time.monotonic() - start
        own, child = cpu_s(os.getpid()) - own, child_cpu_s() - child
    finally:
        engine.__dict__.pop("_count", None)
        lm.read = reader
    row = summary(caller, n, wall, firsts, tokens)
    total = max(1, sum(tokens))
    row.update(own_cpu_s_per_1k=round(1000 * own / total, 3), engine_cpu_s_per_1k=round(1000 * child / total, 3))
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True, help="InternLM2's tokenizer.model")
    ap.add_argument("--users", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--max-new", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--callers", nargs="+", default=list(CALLERS), choices=CALLERS)
    ap.add_argument("--work", default="/tmp")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    model = write_checkpoint(Path(args.work) / "internlm2-1.8b-shaped", Path(args.tokenizer), LM_1_8B)
    engine, meta = load("lmdeploy", str(model), max(args.users))
    rows = []
    for n in args.users:
        for caller in args.callers:  # untimed: kernels for this batch size and length
            measure(engine, caller, n, args.max_new)
        got: dict[str, list[dict]] = {c: [] for c in args.callers}
        for _ in range(args.rounds):
            for caller in args.callers:
                got[caller].append(measure(engine, caller, n, args.max_new))
        for caller, runs in got.items():
            mid = sorted(runs, key=lambda r: r["tok_s"])[len(runs) // 2]
            rows.append({**mid, "tok_s_rounds": [r["tok_s"] for r in runs],
                         "first_p95_s_rounds": [r["first_p95_s"] for r in runs]})
            print(json.dumps(rows[-1]), flush=True)
    engine.close()
    lib = {r["users"]: r["tok_s"] for r in rows if r["level"] == "library"}
    ratios = {f"{r['level']}/library@{r['users']}": round(r["tok_s"] / lib[r["users"]], 3)
              for r in rows if r["level"] != "library" and r["users"] in lib}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {"max_new": args.max_new, "rounds": args.rounds, "cores": os.cpu_count(), **meta, "rows": rows,
            "ratios": ratios}
    (out / "lmdeploy_callers.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    print(json.dumps(ratios, indent=1))
    plot(rows, out / "lmdeploy_callers.png")


def plot(rows: list[dict], path: Path) -> None:
    """tok/s per caller and user count, with every round as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = sorted({r["users"] for r in rows})
    callers = [c for c in CALLERS if any(r["level"] == c for r in rows)]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(callers)
    for k, caller in enumerate(callers):
        for j, n in enumerate(users):
            row = next((r for r in rows if r["level"] == caller and r["users"] == n), None)
            if row is None:
                continue
            x = j + k * width
            ax.bar(x, row["tok_s"], width, color=f"C{k}", label=caller if j == 0 else None)
            ax.scatter([x] * len(row["tok_s_rounds"]), row["tok_s_rounds"], color="black", s=6, zorder=3)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(users))], [f"{n} users" for n in users])
    ax.set_ylabel("tok/s (median round; dots: every round)")
    ax.set_title("lmdeploy callers: library batch vs the studio's engine object")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
