"""InternLM2-Chat: our native loader and tokenizer against the official InternLM2 code (prints numbers).

Not a test: it needs the official code and a Python environment that runs it (transformers 4.37.2,
einops, sentencepiece). Usage:

    python tests/parity/compare_internlm2.py --official DIR --official-python PYTHON [--internlm2-5] [--keep WORKDIR]

DIR holds the official `modeling_internlm2.py`, `configuration_internlm2.py` and
`tokenization_internlm2.py` (e.g. OpenGVLab/InternVL `internvl_chat/internvl/model/internlm2/`).
Both sides read the same tiny random-weight checkpoint in the official layout, in fp32:
- logits over every position of a chat prompt (official InternLM2ForCausalLM vs our
  LlamaForCausalLM), for the official config and for one whose max_position_embeddings is shorter
  than the prompt, so that dynamic NTK RoPE scaling is exercised;
- a 16-token greedy continuation with each side's KV cache, and through our engine;
- the official InternLM2Tokenizer vs SPTokenizer: ids of sample strings and decoded text of
  random id sequences, with the tiny tokenizer.model and (if present) the real one.
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
REAL_TOKENIZER = ROOT.parent / "shared" / "fixtures" / "internlm2-tokenizer" / "tokenizer.model"
NEW_TOKENS = 16
STRINGS = [
    "Hello world", "你好，请介绍一下你自己。", "What can you do?\nList three things.",
    "  leading and  double spaces\t\ttabs\n\n", "emoji 😀🎉 and accents: café, naïve",
    "def add(a, b):\n    return a + b", "Numbers 12345 and 3.14159, dates 2024-07-26.",
    "混合 mixed 文本 with English and 中文 ！？", "Hi , there . It 's fine , isn't it ?",
    "书生·浦语（InternLM）是上海人工智能实验室开发的。",
]
# Strings where the two differ on purpose: the official tokenizer turns typed special-token
# text into special ids; ours keeps text as text.
INTENDED = ["a<|im_end|>b", "x[UNUSED_TOKEN_145]y", "<s>hi</s>"]
CASES = [("official config (max_position_embeddings 32768)", {}),
         ("max_position_embeddings 24: dynamic NTK beyond it", {"max_position_embeddings": 24})]
# InternLM2.5-Chat (--internlm2-5): its config.json values (rope_theta 1e6, dynamic NTK factor 2.0,
# max_position_embeddings 32768, no bias, vocab 92544) with tiny widths in each size's query-per-kv
# grouping (1.8B 16/8, 7B 32/8, 20B 48/8 heads), then beyond the trained length, and with factor 3.0.
CASES_2_5 = [("InternLM2.5-1.8B/7B config, 2 q heads per kv head", {}),
             ("InternLM2.5 config, 4 q heads per kv head (7B)", {"num_attention_heads": 8, "hidden_size": 128}),
             ("InternLM2.5 config, 6 q heads per kv head (20B)", {"num_attention_heads": 6, "num_key_value_heads": 1,
                                                                  "hidden_size": 96}),
             ("InternLM2.5 config, max_position_embeddings 24: dynamic NTK beyond it", {"max_position_embeddings": 24}),
             ("InternLM2.5 config, rope factor 3.0, max_position_embeddings 24",
              {"max_position_embeddings": 24, "rope_scaling": {"type": "dynamic", "factor": 3.0}})]


# ---------------------------------------------------------------- inputs (our environment)


def write_inputs(work: Path, cases: list = CASES) -> dict:
    """Tiny checkpoints (fp32), the prompt ids, and tokenizer folders; returns the job description."""
    sys.path.insert(0, str(ROOT))
    from studio.core.types import Message
    from studio.families.internlm2 import InternLM2Family
    from studio.families.sp_tokenizer import SPTokenizer
    from tests.support.tiny_checkpoints import write_tiny_internlm2, write_tiny_tokenizer

    for i, (_, dims) in enumerate(cases):
        write_tiny_internlm2(work / f"ckpt{i}", seed=11, dtype="float32", **dims)
    tok = SPTokenizer.from_dir(work / "ckpt0")
    msgs = [Message.of("user", "你好，请介绍一下你自己。"), Message.of("assistant", "我是书生·浦语。"),
            Message.of("user", "Tell me a story about a cat.")]
    prompt = InternLM2Family().encode(tok, msgs)
    tokenizers = {"tiny": str(work / "ckpt0")}
    write_tiny_tokenizer(work / "tok-img", extra_special={92544 + i: t for i, t in enumerate(
        ["<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"])})
    tokenizers["tiny+InternVL2 tokens"] = str(work / "tok-img")
    if REAL_TOKENIZER.is_file():
        for name, src in (("real", work / "ckpt0"), ("real+InternVL2 tokens", work / "tok-img")):
            folder = work / f"tok-{name.replace(' ', '_').replace('+', '_')}"
            folder.mkdir()
            for file in ("tokenizer_config.json", "special_tokens_map.json"):
                shutil.copyfile(src / file, folder / file)
            shutil.copyfile(REAL_TOKENIZER, folder / "tokenizer.model")
            tokenizers[name] = str(folder)
    rng = random.Random(5)
    sequences = {}
    for name, folder in tokenizers.items():
        tok = SPTokenizer.from_dir(Path(folder))
        sequences[name] = [_random_ids(rng, tok) for _ in range(150)]
    job = {"prompt": prompt, "cases": len(cases), "tokenizers": tokenizers, "strings": STRINGS + INTENDED,
           "sequences": sequences}
    (work / "job.json").write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    return job


def _random_ids(rng: random.Random, tok) -> list[int]:
    """Ids mixing encoded text, bytes, special and added tokens, in random order and length."""
    pool = tok.encode(rng.choice(STRINGS), add_special_tokens=False) + list(tok.added_tokens_decoder)
    pool += [rng.randrange(3, tok.vocab_size - 200) for _ in range(8)]
    return [rng.choice(pool) for _ in range(rng.randrange(1, 24))]


# ---------------------------------------------------------------- official side (official environment)


def official_side(work: Path, official: Path) -> None:
    """Logits, greedy continuations and tokenizer outputs of the official code, saved to files."""
    import importlib

    import torch

    sys.path.insert(0, str(official.parent))
    modeling = importlib.import_module(f"{official.name}.modeling_internlm2")
    tokenization = importlib.import_module(f"{official.name}.tokenization_internlm2")
    job = json.loads((work / "job.json").read_text(encoding="utf-8"))
    ids = torch.tensor([job["prompt"]])
    out = {}
    for i in range(job["cases"]):
        model = modeling.InternLM2ForCausalLM.from_pretrained(work / f"ckpt{i}", torch_dtype=torch.float32).eval()
        with torch.no_grad():
            logits = model(ids).logits[0]
            step = model(ids, use_cache=True)
            new, past = [], step.past_key_values
            for _ in range(NEW_TOKENS):
                new.append(int(step.logits[0, -1].argmax()))
                step = model(torch.tensor([[new[-1]]]), past_key_values=past, use_cache=True)
                past = step.past_key_values
        torch.save(logits, work / f"official-logits{i}.pt")
        out[f"greedy{i}"] = new
    for name, folder in job["tokenizers"].items():
        tok = tokenization.InternLM2Tokenizer.from_pretrained(folder)
        out[f"tok:{name}"] = {
            "encode": [tok.encode(s) for s in job["strings"]],
            "decode": [tok.decode(seq) for seq in job["sequences"][name]],
            "decode_skip": [tok.decode(seq, skip_special_tokens=True) for seq in job["sequences"][name]],
        }
    (work / "official.json").write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")


# ---------------------------------------------------------------- our side and the comparison


def our_side(work: Path, job: dict, official: dict, cases: list = CASES) -> None:
    """Our loader, engine and tokenizer on the same inputs; prints the comparison."""
    import torch

    from studio.families.internlm2 import InternLM2Family
    from studio.families.sp_tokenizer import SPTokenizer

    ids = torch.tensor([job["prompt"]])
    print(f"prompt: {ids.shape[1]} tokens (chat format with the default system prompt), fp32")
    for i, (label, _) in enumerate(cases):
        lm = InternLM2Family().load(work / f"ckpt{i}", torch.float32, lambda f, t: None).lm
        with torch.no_grad():
            logits = lm(ids).logits[0]
            step = lm(ids, use_cache=True)
            new, past = [], step.past_key_values
            for _ in range(NEW_TOKENS):
                new.append(int(step.logits[0, -1].argmax()))
                step = lm(torch.tensor([[new[-1]]]), past_key_values=past, use_cache=True)
                past = step.past_key_values
        theirs = torch.load(work / f"official-logits{i}.pt")
        diff = (logits - theirs).abs().max().item()
        same = new == official[f"greedy{i}"]
        print(f"[{label}] max |logit diff| over {logits.shape[0]} positions x {logits.shape[1]} vocab: {diff:.3e}"
              f" (logit scale {theirs.abs().max().item():.2f}); greedy {NEW_TOKENS} tokens equal: {same}")
        if not same:
            print(f"    ours     {new}\n    official {official[f'greedy{i}']}")
        if "beyond" in label:
            base = torch.load(work / "official-logits0.pt")
            print(f"    (official logits differ from the first case by up to {(theirs - base).abs().max().item():.2f}:"
                  " the scaling is active on both sides)")
    _engine_check(work, official["greedy0"])
    for name, folder in job["tokenizers"].items():
        tok, ref = SPTokenizer.from_dir(Path(folder)), official[f"tok:{name}"]
        n = len(STRINGS)
        enc = [tok.encode(s) for s in job["strings"]]
        same_enc = sum(a == b for a, b in zip(enc[:n], ref["encode"][:n]))
        differs = sum(a != b for a, b in zip(enc[n:], ref["encode"][n:]))
        seqs = job["sequences"][name]
        dec = sum(tok.decode(s) == r for s, r in zip(seqs, ref["decode"]))
        skip = sum(tok.decode(s, skip_special_tokens=True) == r for s, r in zip(seqs, ref["decode_skip"]))
        total = len(seqs)
        print(f"[tokenizer {name}] encode equal {same_enc}/{n}; typed special text kept as text (differs on "
              f"purpose) {differs}/{len(INTENDED)}; decode equal {dec}/{total}, skip_special_tokens {skip}/{total}")
        for s, a, b in zip(job["strings"][:n], enc[:n], ref["encode"][:n]):
            if a != b:
                print(f"    {s!r}: ours {a} official {b}")
        if name == "real":
            print(f"    e.g. {STRINGS[1]!r} -> {enc[1]}")


def _engine_check(work: Path, official_greedy: list[int]) -> None:
    """Greedy text through our HF engine (lean decoder, family prompt) vs the official continuation."""
    from studio.engines.hf_loading import HFOptions
    from studio.core.types import GenParams, Message
    from studio.engines.base import LoadContext, Placement
    from studio.engines.hf import load_hf_engine
    from tests.support.engine_calls import GenerationRequest, generate

    cfg = HFOptions(model_path=str(work / "ckpt0"), family="internlm2", device="cpu", dtype="float32")
    engine = load_hf_engine(cfg, LoadContext("chat", Placement("cpu"), work / "cache", lambda f, t: None))
    try:
        msgs = [Message.of("user", "你好，请介绍一下你自己。"), Message.of("assistant", "我是书生·浦语。"),
                Message.of("user", "Tell me a story about a cat.")]
        params = GenParams(max_new_tokens=NEW_TOKENS, do_sample=False, repetition_penalty=1.0)
        text = "".join(d.text for d in generate(engine, GenerationRequest(msgs, params)))
        stop = next((k for k, t in enumerate(official_greedy) if t in engine.stop_ids), len(official_greedy))
        expected = engine.tokenizer.decode(official_greedy[:stop], skip_special_tokens=True)
        print(f"[engine, decoder {engine.decoder.name}] greedy text equals the official continuation: "
              f"{text == expected} ({len(text)} chars, official stops after {stop} tokens)")
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="folder with the official InternLM2 code")
    parser.add_argument("--official-python", default="/work/scratch/official-venv/bin/python")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    parser.add_argument("--internlm2-5", action="store_true", help="the InternLM2.5-Chat configs instead")
    parser.add_argument("--side", choices=["ours", "official"], default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "official":
        official_side(args.work, args.official.resolve())
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="parity-internlm2-"))
    work.mkdir(parents=True, exist_ok=True)
    cases = CASES_2_5 if args.internlm2_5 else CASES
    job = write_inputs(work, cases)
    subprocess.run([args.official_python, __file__, "--side", "official", "--work", str(work),
                    "--official", str(args.official.resolve())], check=True, cwd=work)
    our_side(work, job, json.loads((work / "official.json").read_text(encoding="utf-8")), cases)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
