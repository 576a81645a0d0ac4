"""InternLM-Chat v1: our native loader, prompt and tokenizer against the official InternLM code (prints numbers).

Not a test: it needs the official code and a Python environment that runs it (transformers 4.37.2,
sentencepiece). Usage:

    python tests/parity/compare_internlm1.py --official DIR --official-python PYTHON [--keep WORKDIR]

DIR holds `modeling_internlm.py`, `configuration_internlm.py` and `tokenization_internlm.py` from
InternLM commit 3028f07cb79e5b1d7342f4ad8d11efad3fd13d17 (`tools/transformers/`). Both sides read
the same tiny random-weight checkpoint in the official layout, in fp32:
- prompt ids: the official `build_inputs` (chat()'s prompt, through the official tokenizer) vs our
  family's `encode`, for several conversations;
- logits over every position of each prompt (official InternLMForCausalLM vs our LlamaForCausalLM),
  for the official config and one with `bias: false`;
- a 16-token greedy continuation with each side's KV cache, the official chat(do_sample=False)
  reply vs our HF engine's streamed text;
- the official InternLMTokenizer vs SPTokenizer: ids of sample strings, decoded text of random ids.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NEW_TOKENS = 16
STRINGS = [
    "Hello world", "你好，请介绍一下你自己。", "What can you do?\nList three things.",
    "  leading and  double spaces\t\ttabs\n\n", "emoji 😀🎉 and accents: café, naïve",
    "def add(a, b):\n    return a + b", "Numbers 12345 and 3.14159, dates 2024-07-26.",
    "混合 mixed 文本 with English and 中文 ！？", "Hi , there . It 's fine , isn't it ?",
    "<|User|>:你好<eoh>\n<|Bot|>:", "书生·浦语（InternLM）是上海人工智能实验室开发的。",
]
# (history, query) as the official chat() takes them.
CONVERSATIONS = [
    ([], "你好"),
    ([], "Tell me a story about a cat."),
    ([("你好，请介绍一下你自己。", "我是书生·浦语。")], "Tell me a story about a cat."),
    ([("Hi", "Hello! How can I help?"), ("List three fruits.", "apples, bananas and cherries")],
     "  And three colours?\n"),
]
CASES = [("official config", {}), ("bias false", {"bias": False})]


def _messages(history, query):
    from studio.core.types import Message

    msgs = []
    for q, a in history:
        msgs += [Message.of("user", q), Message.of("assistant", a)]
    return msgs + [Message.of("user", query)]


# ---------------------------------------------------------------- inputs (our environment)


def write_inputs(work: Path) -> dict:
    """Tiny fp32 checkpoints and the conversations; returns the job description."""
    sys.path.insert(0, str(ROOT))
    from studio.families.sp_tokenizer import SPTokenizer
    from tests.support.tiny_internlm1 import write_tiny_internlm1

    for i, (_, dims) in enumerate(CASES):
        write_tiny_internlm1(work / f"ckpt{i}", seed=11, dtype="float32", **dims)
    tok = SPTokenizer.from_dir(work / "ckpt0")
    rng = random.Random(5)
    sequences = [_random_ids(rng, tok) for _ in range(150)]
    job = {"cases": len(CASES), "conversations": CONVERSATIONS, "strings": STRINGS, "sequences": sequences}
    (work / "job.json").write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    return job


def _random_ids(rng: random.Random, tok) -> list[int]:
    """Ids mixing encoded text, bytes, the markers and bos/eos, in random order and length."""
    pool = tok.encode(rng.choice(STRINGS), add_special_tokens=False) + [0, 1, 2, 103027, 103028]
    pool += [rng.randrange(3, 700) for _ in range(8)]
    return [rng.choice(pool) for _ in range(rng.randrange(1, 24))]


# ---------------------------------------------------------------- official side (official environment)


def official_side(work: Path, official: Path) -> None:
    """Prompt ids, logits, greedy continuations, chat() replies and tokenizer outputs of the official code."""
    import torch

    sys.path.insert(0, str(official))  # the official modeling file imports `configuration_internlm` flat
    import modeling_internlm
    import tokenization_internlm

    job = json.loads((work / "job.json").read_text(encoding="utf-8"))
    tok = tokenization_internlm.InternLMTokenizer.from_pretrained(str(work / "ckpt0"))
    out = {"prompts": [], "encode": [tok.encode(s) for s in job["strings"]],
           "decode": [tok.decode(s) for s in job["sequences"]],
           "decode_skip": [tok.decode(s, skip_special_tokens=True) for s in job["sequences"]]}
    for i in range(job["cases"]):
        model = modeling_internlm.InternLMForCausalLM.from_pretrained(work / f"ckpt{i}", torch_dtype=torch.float32).eval()
        for c, (history, query) in enumerate(job["conversations"]):
            ids = model.build_inputs(tok, query, [tuple(r) for r in history])["input_ids"]
            if i == 0:
                out["prompts"].append(ids[0].tolist())
            with torch.no_grad():
                torch.save(model(ids).logits[0], work / f"official-logits{i}-{c}.pt")
                step = model(ids, use_cache=True)
                new, past = [], step.past_key_values
                for _ in range(NEW_TOKENS):
                    new.append(int(step.logits[0, -1].argmax()))
                    step = model(torch.tensor([[new[-1]]]), past_key_values=past, use_cache=True)
                    past = step.past_key_values
            out[f"greedy{i}-{c}"] = new
            if i == 0:
                reply, _ = model.chat(tok, query, [tuple(r) for r in history], max_new_tokens=NEW_TOKENS, do_sample=False)
                out[f"chat{c}"] = reply
    (work / "official.json").write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")


# ---------------------------------------------------------------- our side and the comparison


def our_side(work: Path, job: dict, official: dict) -> None:
    """Our family, loader, engine and tokenizer on the same inputs; prints the comparison."""
    import torch

    from studio.families.internlm1 import InternLM1Family
    from studio.families.sp_tokenizer import SPTokenizer

    family = InternLM1Family()
    tok = SPTokenizer.from_dir(work / "ckpt0")
    prompts = [family.encode(tok, _messages(h, q)) for h, q in job["conversations"]]
    same = sum(a == b for a, b in zip(prompts, official["prompts"]))
    print(f"prompt ids (official build_inputs + InternLMTokenizer vs ours): equal {same}/{len(prompts)}"
          f" (lengths {[len(p) for p in prompts]})")
    for ours, theirs in zip(prompts, official["prompts"]):
        if ours != theirs:
            print(f"    ours     {ours}\n    official {theirs}")
    for i, (label, _) in enumerate(CASES):
        lm = family.load(work / f"ckpt{i}", torch.float32, lambda f, t: None).lm
        worst, greedy_same = 0.0, 0
        for c, ids in enumerate(official["prompts"]):
            x = torch.tensor([ids])
            with torch.no_grad():
                logits = lm(x).logits[0]
                step = lm(x, use_cache=True)
                new, past = [], step.past_key_values
                for _ in range(NEW_TOKENS):
                    new.append(int(step.logits[0, -1].argmax()))
                    step = lm(torch.tensor([[new[-1]]]), past_key_values=past, use_cache=True)
                    past = step.past_key_values
            worst = max(worst, (logits - torch.load(work / f"official-logits{i}-{c}.pt")).abs().max().item())
            greedy_same += new == official[f"greedy{i}-{c}"]
        print(f"[{label}] max |logit diff| over all positions of {len(prompts)} prompts: {worst:.3e}; "
              f"greedy {NEW_TOKENS} tokens equal {greedy_same}/{len(prompts)}")
    _engine_check(work, job, official)
    enc = [tok.encode(s) for s in job["strings"]]
    seqs = job["sequences"]
    print(f"[tokenizer] encode equal {sum(a == b for a, b in zip(enc, official['encode']))}/{len(enc)}; "
          f"decode equal {sum(tok.decode(s) == r for s, r in zip(seqs, official['decode']))}/{len(seqs)}, "
          f"skip_special_tokens {sum(tok.decode(s, skip_special_tokens=True) == r for s, r in zip(seqs, official['decode_skip']))}/{len(seqs)}")
    for s, a, b in zip(job["strings"], enc, official["encode"]):
        if a != b:
            print(f"    {s!r}: ours {a} official {b}")
    for s, r in zip(seqs, official["decode"]):
        if tok.decode(s) != r:
            print(f"    decode {s}: ours {tok.decode(s)!r} official {r!r}")
            break


def _engine_check(work: Path, job: dict, official: dict) -> None:
    """Greedy text through our HF engine (family prompt, lean decoder) vs the official chat() reply."""
    from tests.support.engine_calls import GenerationRequest, generate
    from studio.core.types import GenParams
    from studio.engines.base import LoadContext, Placement
    from studio.engines.hf import load_hf_engine
    from studio.engines.hf_loading import HFOptions

    cfg = HFOptions(model_path=str(work / "ckpt0"), family="auto", device="cpu", dtype="float32")
    engine = load_hf_engine(cfg, LoadContext("chat", Placement("cpu"), work / "cache", lambda f, t: None))
    try:
        params = GenParams(max_new_tokens=NEW_TOKENS, do_sample=False, repetition_penalty=1.0)
        same = 0
        for c, (history, query) in enumerate(job["conversations"]):
            text = "".join(d.text for d in generate(engine, GenerationRequest(_messages(history, query), params)))
            same += text == official[f"chat{c}"]
            if text != official[f"chat{c}"]:
                print(f"    engine {text!r}\n    chat() {official[f'chat{c}']!r}")
        print(f"[engine, decoder {engine.decoder.name}, family auto -> {engine.family.name}] greedy reply equals "
              f"the official chat(do_sample=False) reply: {same}/{len(job['conversations'])}")
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="folder with the official InternLM v1 code")
    parser.add_argument("--official-python", default="/work/scratch/official-venv/bin/python")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    parser.add_argument("--side", choices=["ours", "official"], default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "official":
        official_side(args.work, args.official.resolve())
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="parity-internlm1-"))
    work.mkdir(parents=True, exist_ok=True)
    job = write_inputs(work)
    subprocess.run([args.official_python, __file__, "--side", "official", "--work", str(work),
                    "--official", str(args.official.resolve())], check=True, cwd=work)
    our_side(work, job, json.loads((work / "official.json").read_text(encoding="utf-8")))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
