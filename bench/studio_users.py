"""Concurrent users through the launched studio on the lmdeploy engine (GPU machine).

A random-weight Llama checkpoint shaped like a scaled-down InternLM2 (no remote code) is written, the
studio is launched on it with `engine: lmdeploy` exactly as launch.py does, and N gradio_client users
send a chat message at once. Reports per-user first-update latency and completion time.

Run (GPU machine, lmdeploy + gradio on PYTHONPATH):  python bench/studio_users.py --out $OUT --users 1 8 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_checkpoint(folder: Path) -> Path:
    """A bf16 random Llama (8 layers, hidden 512, GQA 8:2, InternLM2 vocabulary) with a tiny SentencePiece."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizerFast

    from tests.support.tiny_checkpoints import CHAT_TEMPLATE, REAL_VOCAB, write_tiny_tokenizer

    spm = write_tiny_tokenizer(folder.parent / "spm") / "tokenizer.model"
    tok = LlamaTokenizerFast(vocab_file=str(spm), legacy=False, add_bos_token=True)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(folder)
    config = LlamaConfig(vocab_size=REAL_VOCAB, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096,
                         rope_theta=1_000_000.0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    return folder


def one_user(url: str, max_new: int) -> dict:
    """One client: send a message, time the first streamed update and the end."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    start = time.monotonic()
    job = client.submit("Tell me a story.", max_new_tokens=max_new, do_sample=False, api_name="/chat")
    first = None
    for _ in job:
        first = first or time.monotonic() - start
    job.result()
    return {"first_s": first or time.monotonic() - start, "total_s": time.monotonic() - start}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--users", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--max-new", type=int, default=128)
    args = ap.parse_args()
    from tests.support.apps import running_app

    work = Path(tempfile.mkdtemp())
    model = write_checkpoint(work / "llama-tiny")
    cfg = work / "lmdeploy.yaml"
    cfg.write_text(f"""engines:
  chat:
    engine: lmdeploy
    family: hf_chat_template
    model_path: {model}
    backend: pytorch
    session_len: 2048
    max_batch_size: 32
ui:
  queue_max_size: 64
""", encoding="utf-8")
    rows = []
    with running_app(cfg, work / "data") as app:
        one_user(app.url, 8)  # warm-up
        for n in args.users:
            start = time.monotonic()
            with ThreadPoolExecutor(n) as pool:
                results = list(pool.map(lambda _: one_user(app.url, args.max_new), range(n)))
            wall = time.monotonic() - start
            firsts = sorted(r["first_s"] for r in results)
            row = {"users": n, "ok": len(results), "wall_s": round(wall, 2),
                   "first_p50_s": round(statistics.median(firsts), 3),
                   "first_p95_s": round(firsts[max(0, int(0.95 * n) - 1)], 3),
                   "total_max_s": round(max(r["total_s"] for r in results), 2)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "studio_users.json").write_text(json.dumps({"rows": rows, "max_new": args.max_new}, indent=2))


if __name__ == "__main__":
    main()
