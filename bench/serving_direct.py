"""One engine measured without the studio's server (a worker of bench/serving_gpu.py; own process).

Two levels, same weights, same prompts:
- "library": transformers `generate` / lmdeploy's pipeline called directly with N prompts at once.
- "engine": the studio's engine object (what the UI and the API call), N threads at once.
Also the greedy token ids of 4 prompts × 32 tokens for the HF-vs-lmdeploy check.

Run:  python bench/serving_direct.py --engine hf|lmdeploy --model DIR --out FILE.json [--users 1 8 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serving_model import prompt  # noqa: E402

GREEDY_PROMPTS = 4
GREEDY_TOKENS = 32
WARM_TOKENS = 8  # HF: an untimed round of this length at each user count before the timed one


def summary(kind: str, users: int, wall: float, firsts: list[float], tokens: list[int]) -> dict:
    """One row: aggregate tok/s, first-token p50/p95 (nearest rank), tokens per reply."""
    firsts = sorted(firsts)
    p95 = firsts[min(len(firsts) - 1, max(0, -(-95 * len(firsts) // 100) - 1))]
    return {"level": kind, "users": users, "wall_s": round(wall, 3), "tok_s": round(sum(tokens) / wall, 1),
            "first_p50_s": round(statistics.median(firsts), 4), "first_p95_s": round(p95, 4),
            "tokens_min": min(tokens), "tokens_max": max(tokens)}


def engine_rows(engine, users_list: list[int], max_new: int, warm: int) -> list[dict]:
    """N threads each stream one request through the studio's engine object."""
    from studio.core.types import GenParams, Message
    from studio.engines.base import generate

    def one(i: int, start: float, new: int) -> tuple[float, int]:
        req = ([Message.of("user", prompt(i))], GenParams(max_new_tokens=new, do_sample=False))
        first, last = None, None
        for d in generate(engine, *req):
            if d.text and first is None:
                first = time.monotonic() - start
            last = d
        assert last.finish_reason == "length" and last.error is None, last
        return first, last.completion_tokens

    rows = []
    for n in users_list:
        with ThreadPoolExecutor(n) as pool:  # untimed round: kernels and graphs for this batch size
            list(pool.map(lambda i: one(i, time.monotonic(), warm), range(n)))
        start = time.monotonic()
        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(lambda i: one(i, start, max_new), range(n)))
        wall = time.monotonic() - start
        rows.append(summary("engine", n, wall, [r[0] for r in results], [r[1] for r in results]))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def hf_library(model_dir: str, users_list: list[int], max_new: int) -> tuple[list[dict], dict]:
    """transformers `generate` on the same weights: batch N, first token = a 1-token generate of the batch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map=device).eval()

    def batch(n: int):
        texts = [tok.apply_chat_template([{"role": "user", "content": prompt(i)}], add_generation_prompt=True,
                                         tokenize=False) for i in range(n)]
        return tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)

    def gen(inputs, new: int, **kw):
        return model.generate(**inputs, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                              pad_token_id=tok.pad_token_id, **kw)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    gen(batch(1), 8)  # warm-up
    rows = []
    for n in users_list:
        inputs = batch(n)
        gen(inputs, WARM_TOKENS)
        sync()
        t0 = time.monotonic()
        gen(inputs, 1)
        sync()
        first = time.monotonic() - t0
        t0 = time.monotonic()
        out = gen(inputs, max_new)
        sync()
        wall = time.monotonic() - t0
        new = out.shape[1] - inputs["input_ids"].shape[1]
        rows.append(summary("library", n, wall, [first] * n, [new] * n))
        print(json.dumps(rows[-1]), flush=True)
    greedy = {"prompt_ids": [], "ids": [], "margins": []}
    for i in range(GREEDY_PROMPTS):
        ids = tok.apply_chat_template([{"role": "user", "content": prompt(i)}], add_generation_prompt=True,
                                      tokenize=True, return_dict=True, return_tensors="pt").to(device)
        out = model.generate(**ids, max_new_tokens=GREEDY_TOKENS, min_new_tokens=GREEDY_TOKENS, do_sample=False,
                             output_logits=True, return_dict_in_generate=True, pad_token_id=tok.pad_token_id)
        top2 = [torch.topk(step[0].float(), 2).values for step in out.logits]
        greedy["prompt_ids"].append(ids["input_ids"][0].tolist())
        greedy["ids"].append(out.sequences[0, ids["input_ids"].shape[1]:].tolist())
        greedy["margins"].append([round(float(v[0] - v[1]), 4) for v in top2])
    return rows, greedy


def lmdeploy_library(pipe, users_list: list[int], max_new: int) -> tuple[list[dict], dict]:
    """lmdeploy's pipeline with a list of N conversations at once (its own batching)."""
    from lmdeploy import GenerationConfig

    rows = []
    for n in users_list:
        chats = [[{"role": "user", "content": prompt(i)}] for i in range(n)]
        pipe.infer(chats, gen_config=GenerationConfig(max_new_tokens=max_new, do_sample=False, ignore_eos=True))
        cfg = GenerationConfig(max_new_tokens=max_new, do_sample=False, ignore_eos=True)
        firsts, tokens = [None] * n, [0] * n
        start = time.monotonic()
        for r in pipe.stream_infer(chats, gen_config=cfg):
            if r.text and firsts[r.index] is None:
                firsts[r.index] = time.monotonic() - start
            tokens[r.index] = r.generate_token_len or tokens[r.index]
        wall = time.monotonic() - start
        rows.append(summary("library", n, wall, firsts, tokens))
        print(json.dumps(rows[-1]), flush=True)
    greedy = {"ids": [], "prompt_tokens": []}
    cfg = GenerationConfig(max_new_tokens=GREEDY_TOKENS, do_sample=False, ignore_eos=True)
    for i in range(GREEDY_PROMPTS):
        r = pipe.infer([{"role": "user", "content": prompt(i)}], gen_config=cfg)
        greedy["ids"].append(list(r.token_ids)[-GREEDY_TOKENS:])
        greedy["prompt_tokens"].append(r.input_token_len)
    return rows, greedy


def load(kind: str, model_dir: str, max_batch: int, num_gpus: int = 1):
    from studio.engines.hf_loading import HFOptions
    from studio.engines.lmdeploy_setup import LmdeployOptions
    from studio.engines import ENGINES, preflight
    from studio.engines.base import LoadContext, Placement

    import torch

    if kind == "hf":
        device = "cuda" if torch.cuda.is_available() else "cpu"
        cfg = HFOptions(model_path=model_dir, device=device, dtype="bfloat16", context_window=4096)
    else:
        cfg = LmdeployOptions(model_path=model_dir, backend="pytorch", session_len=4096,
                           max_batch_size=max_batch)
    plan = preflight(cfg, num_gpus)
    ctx = LoadContext("chat", Placement(cfg.device, num_gpus), Path(tempfile.mkdtemp()), lambda f, t: None)
    t0 = time.monotonic()
    engine = ENGINES.get(kind).load(cfg, ctx)
    return engine, {"plan": plan, "load_s": round(time.monotonic() - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", choices=["hf", "lmdeploy"], required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--users", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--max-new", type=int, default=128)
    ap.add_argument("--num-gpus", type=int, default=1, help="lmdeploy tp / transformers device_map span")
    args = ap.parse_args()
    engine, meta = load(args.engine, args.model, max(args.users), args.num_gpus)
    meta["num_gpus"] = args.num_gpus
    if args.engine == "hf":
        meta["devices"] = engine.info().device
    from studio.core.types import GenParams, Message
    from studio.engines.base import generate

    list(generate(engine, [Message.of("user", "warm up")], GenParams(max_new_tokens=8, do_sample=False)))
    # lmdeploy tunes kernels per batch size and length on first use: warm up at the full length
    rows = engine_rows(engine, args.users, args.max_new, args.max_new if args.engine == "lmdeploy" else WARM_TOKENS)
    if args.engine == "lmdeploy":
        lib, greedy = lmdeploy_library(engine.pipe, args.users, args.max_new)
        engine.close()
    else:
        engine.close()
        lib, greedy = hf_library(args.model, args.users, args.max_new)
    Path(args.out).write_text(json.dumps({"engine": args.engine, **meta, "rows": lib + rows, "greedy": greedy},
                                         indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
