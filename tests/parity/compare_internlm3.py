"""InternLM3-8B-Instruct: our native loader and tokenizer against the official InternLM3 code (prints numbers).

Not a test: it needs the official code and a Python environment that runs it (transformers 4.48,
sentencepiece). Usage:

    python tests/parity/compare_internlm3.py --official DIR --official-python PYTHON \
        [--real-tokenizer FOLDER] [--write-golden FILE] [--keep WORKDIR]

DIR is a folder named e.g. `internlm3` holding the official `modeling_internlm3.py`,
`configuration_internlm3.py` and `tokenization_internlm3.py` of internlm/internlm3-8b-instruct.
Both sides read the same tiny random-weight checkpoints in the official layout, in fp32:
- logits over every position of a chat prompt (official InternLM3ForCausalLM vs our
  LlamaForCausalLM) for the official config, one whose max_position_embeddings is shorter than the
  prompt (dynamic NTK RoPE in play), and two with the bias switches on (qkv_bias only; both);
- a 16-token greedy continuation with each side's KV cache, and through our engine;
- prompt ids: the official tokenizer's apply_chat_template vs our family's encode, for fixed
  conversations (with --write-golden, the official ids are written as test data);
- the official InternLM3Tokenizer vs ours: ids of sample strings and decoded text of random id
  sequences, with the tiny tokenizer.model and (with --real-tokenizer) the real one.
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
META = ("You are an AI assistant whose name is InternLM (书生·浦语).\n"
        "- InternLM (书生·浦语) is a conversational language model that is developed by Shanghai AI Laboratory "
        "(上海人工智能实验室). It is designed to be helpful, honest, and harmless.\n"
        "- InternLM (书生·浦语) can understand and communicate fluently in the language chosen by the user such "
        "as English and 中文.")
# (name, turns); the official side gets the model card's system prompt first where a turn list has none.
CONVERSATIONS = [
    ("one user turn", [("user", "Please tell me five scenic spots in Shanghai")]),
    ("chinese, two turns", [("user", "你好，请介绍一下你自己。"), ("assistant", "我是书生·浦语。"),
                            ("user", "Tell me a story about a cat.")]),
    ("own system prompt", [("system", "You are a helpful AI assistant"), ("user", "List 3 countries and their capitals.")]),
    ("whitespace and code", [("user", "  two  spaces\n\ndef add(a, b):\n    return a + b\t")]),
]
STRINGS = [
    "Hello world", "你好，请介绍一下你自己。", "What can you do?\nList three things.",
    "  leading and  double spaces\t\ttabs\n\n", "emoji 😀🎉 and accents: café, naïve",
    "def add(a, b):\n    return a + b", "Numbers 12345 and 3.14159, dates 2024-07-26.",
    "混合 mixed 文本 with English and 中文 ！？", " a leading space", "书生·浦语（InternLM）是上海人工智能实验室开发的。",
]
# Typed special-token text: the official tokenizer turns it into special ids; ours keeps it as text.
INTENDED = ["a<|im_end|>b", "x<|im_start|>y", "<s>hi</s>", "<planning>plan</planning>"]
CASES = [("official config (max_position_embeddings 32768)", {}),
         ("max_position_embeddings 40: dynamic NTK beyond it", {"max_position_embeddings": 40}),
         ("qkv_bias true, bias false", {"qkv_bias": True}),
         ("qkv_bias and bias true", {"qkv_bias": True, "bias": True})]


def _messages(turns):
    """Turns with the default system prompt first when they have none (what our family does)."""
    return turns if any(r == "system" for r, _ in turns) else [("system", META), *turns]


# ---------------------------------------------------------------- inputs (our environment)


def write_inputs(work: Path, real_tokenizer) -> dict:
    """Tiny checkpoints (fp32), prompt ids, tokenizer folders and random id sequences; returns the job."""
    sys.path.insert(0, str(ROOT))
    from studio.core.types import Message
    from studio.families.internlm3 import InternLM3Family
    from studio.families.internlm3_tokenizer import InternLM3Tokenizer
    from tests.support.tiny_internlm3 import write_tiny_internlm3

    for i, (_, dims) in enumerate(CASES):
        write_tiny_internlm3(work / f"ckpt{i}", seed=11, dtype="float32", **dims)
    tokenizers = {"tiny": str(work / "ckpt0")}
    if real_tokenizer:
        tokenizers["real"] = str(real_tokenizer)
    fam, rng, prompts, sequences = InternLM3Family(), random.Random(5), {}, {}
    for name, folder in tokenizers.items():
        tok = InternLM3Tokenizer.from_dir(Path(folder))
        prompts[name] = [fam.encode(tok, [Message.of(r, t) for r, t in turns]) for _, turns in CONVERSATIONS]
        sequences[name] = [_random_ids(rng, tok) for _ in range(200)]
    job = {"cases": len(CASES), "tokenizers": tokenizers, "strings": STRINGS + INTENDED, "sequences": sequences,
           "prompts": prompts, "conversations": [_messages(t) for _, t in CONVERSATIONS]}
    (work / "job.json").write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    return job


def _random_ids(rng: random.Random, tok) -> list[int]:
    """Ids mixing encoded text, bytes, special tokens and unused pieces, in random order and length."""
    pool = tok.encode(rng.choice(STRINGS), add_special_tokens=False) + list(tok.added_tokens_decoder)
    pool += [rng.randrange(3, tok.vocab_size) for _ in range(8)]
    return [rng.choice(pool) for _ in range(rng.randrange(1, 24))]


# ---------------------------------------------------------------- official side (official environment)


def _greedy(model, ids):
    """Logits over the prompt and NEW_TOKENS greedy ids decoded with the model's KV cache."""
    import torch

    with torch.no_grad():
        logits = model(ids).logits[0]
        step = model(ids, use_cache=True)
        new, past = [], step.past_key_values
        for _ in range(NEW_TOKENS):
            new.append(int(step.logits[0, -1].argmax()))
            step = model(torch.tensor([[new[-1]]]), past_key_values=past, use_cache=True)
            past = step.past_key_values
    return logits, new


def official_side(work: Path, official: Path) -> None:
    """Logits, greedy continuations, prompt ids and tokenizer outputs of the official code, saved to files."""
    import importlib

    import torch

    sys.path.insert(0, str(official.parent))
    modeling = importlib.import_module(f"{official.name}.modeling_internlm3")
    tokenization = importlib.import_module(f"{official.name}.tokenization_internlm3")
    job = json.loads((work / "job.json").read_text(encoding="utf-8"))
    ids = torch.tensor([job["prompts"]["tiny"][1]])
    out = {}
    for i in range(job["cases"]):
        model = modeling.InternLM3ForCausalLM.from_pretrained(work / f"ckpt{i}", torch_dtype=torch.float32).eval()
        logits, out[f"greedy{i}"] = _greedy(model, ids)
        torch.save(logits, work / f"official-logits{i}.pt")
    for name, folder in job["tokenizers"].items():
        tok = tokenization.InternLM3Tokenizer.from_pretrained(folder)
        chats = [[{"role": r, "content": t} for r, t in turns] for turns in job["conversations"]]
        out[f"tok:{name}"] = {
            "prompt_ids": [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True) for c in chats],
            "prompt_text": [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats],
            "encode": [tok.encode(s) for s in job["strings"]],
            "decode": [tok.decode(seq) for seq in job["sequences"][name]],
            "decode_skip": [tok.decode(seq, skip_special_tokens=True) for seq in job["sequences"][name]],
        }
    (work / "official.json").write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")


# ---------------------------------------------------------------- our side and the comparison


def our_side(work: Path, job: dict, official: dict) -> None:
    """Our loader, engine and tokenizer on the same inputs; prints the comparison."""
    import torch

    from studio.core.types import Message
    from studio.families.internlm3 import InternLM3Family
    from studio.families.internlm3_tokenizer import InternLM3Tokenizer

    ids = torch.tensor([job["prompts"]["tiny"][1]])
    print(f"prompt: {ids.shape[1]} tokens (chat format with the default system prompt), fp32")
    for i, (label, _) in enumerate(CASES):
        lm = InternLM3Family().load(work / f"ckpt{i}", torch.float32, lambda f, t: None).lm
        logits, new = _greedy(lm, ids)
        theirs = torch.load(work / f"official-logits{i}.pt")
        diff = (logits - theirs).abs().max().item()
        same = new == official[f"greedy{i}"]
        print(f"[{label}] max |logit diff| over {logits.shape[0]} positions x {logits.shape[1]} vocab: {diff:.3e}"
              f" (logit scale {theirs.abs().max().item():.2f}); greedy {NEW_TOKENS} tokens equal: {same}")
        if not same:
            print(f"    ours     {new}\n    official {official[f'greedy{i}']}")
        if i == 1:
            base = torch.load(work / "official-logits0.pt")
            print(f"    (official logits differ from the first case by up to {(theirs - base).abs().max().item():.2f}:"
                  " the scaling is active on both sides)")
    _engine_check(work, [Message.of(r, t) for r, t in CONVERSATIONS[1][1]], official["greedy0"])
    fam = InternLM3Family()
    for name, folder in job["tokenizers"].items():
        tok, ref = InternLM3Tokenizer.from_dir(Path(folder)), official[f"tok:{name}"]
        prompts = job["prompts"][name]
        texts = [fam.build_prompt(tok, [Message.of(r, t) for r, t in turns]) for _, turns in CONVERSATIONS]
        print(f"[prompts {name}] ids equal {sum(a == b for a, b in zip(prompts, ref['prompt_ids']))}/{len(prompts)}, "
              f"text equal {sum(a == b for a, b in zip(texts, ref['prompt_text']))}/{len(texts)} "
              f"({', '.join(str(len(p)) for p in prompts)} ids)")
        n = len(STRINGS)
        enc = [tok.encode(s) for s in job["strings"]]
        same_enc = sum(a == b for a, b in zip(enc[:n], ref["encode"][:n]))
        differs = sum(a != b for a, b in zip(enc[n:], ref["encode"][n:]))
        seqs = job["sequences"][name]
        dec = sum(tok.decode(s) == r for s, r in zip(seqs, ref["decode"]))
        skip = sum(tok.decode(s, skip_special_tokens=True) == r for s, r in zip(seqs, ref["decode_skip"]))
        print(f"[tokenizer {name}] encode equal {same_enc}/{n}; typed special text kept as text (differs on "
              f"purpose) {differs}/{len(INTENDED)}; decode equal {dec}/{len(seqs)}, skip_special_tokens {skip}/{len(seqs)}")
        for s, a, b in zip(job["strings"][:n], enc[:n], ref["encode"][:n]):
            if a != b:
                print(f"    {s!r}: ours {a} official {b}")
        for s, r in list(zip(seqs, ref["decode"]))[:200]:
            if tok.decode(s) != r:
                print(f"    decode {s}: ours {tok.decode(s)!r} official {r!r}")
                break


def _engine_check(work: Path, msgs, official_greedy: list[int]) -> None:
    """Greedy text through our HF engine (lean decoder, family prompt) vs the official continuation."""
    from studio.core.types import GenParams
    from studio.engines.base import LoadContext, Placement
    from studio.engines.hf import load_hf_engine
    from studio.engines.hf_loading import HFOptions
    from tests.support.engine_calls import GenerationRequest, generate

    cfg = HFOptions(model_path=str(work / "ckpt0"), family="internlm3", device="cpu", dtype="float32")
    engine = load_hf_engine(cfg, LoadContext("chat", Placement("cpu"), work / "cache", lambda f, t: None))
    try:
        params = GenParams(max_new_tokens=NEW_TOKENS, do_sample=False, repetition_penalty=1.0)
        text = "".join(d.text for d in generate(engine, GenerationRequest(msgs, params)))
        stop = next((k for k, t in enumerate(official_greedy) if t in engine.stop_ids), len(official_greedy))
        expected = engine.tokenizer.decode(official_greedy[:stop], skip_special_tokens=True)
        print(f"[engine, decoder {engine.decoder.name}] greedy text equals the official continuation: "
              f"{text == expected} ({len(text)} chars, official stops after {stop} tokens)")
    finally:
        engine.close()


def write_golden(path: Path, job: dict, official: dict) -> None:
    """The official prompt ids of the fixed conversations (tiny tokenizer), as test data (one line each)."""
    ref = official["tok:tiny"]
    rows = [json.dumps({"name": name, "turns": turns, "official_turns": full, "ids": ids, "text": text},
                       ensure_ascii=False)
            for (name, turns), full, ids, text in zip(CONVERSATIONS, job["conversations"], ref["prompt_ids"],
                                                      ref["prompt_text"])]
    head = json.dumps({"source": "official InternLM3Tokenizer.apply_chat_template (transformers 4.48.3) on the "
                                 "tokenizer of tests/support/tiny_internlm3.py; official_turns has the model card's "
                                 "system prompt first where turns has none"}, ensure_ascii=False)
    path.write_text(head[:-1] + ', "conversations": [\n' + ",\n".join(rows) + "\n]}\n", encoding="utf-8")
    print(f"golden ids written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="folder with the official InternLM3 code")
    parser.add_argument("--official-python", default="/work/scratch/official-venv/bin/python")
    parser.add_argument("--real-tokenizer", type=Path, help="folder with the real tokenizer.model and its json files")
    parser.add_argument("--write-golden", type=Path, help="write the official prompt ids (tiny tokenizer) here")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    parser.add_argument("--side", choices=["ours", "official"], default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "official":
        official_side(args.work, args.official.resolve())
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="parity-internlm3-"))
    work.mkdir(parents=True, exist_ok=True)
    job = write_inputs(work, args.real_tokenizer)
    subprocess.run([args.official_python, __file__, "--side", "official", "--work", str(work),
                    "--official", str(args.official.resolve())], check=True, cwd=work)
    official = json.loads((work / "official.json").read_text(encoding="utf-8"))
    our_side(work, job, official)
    if args.write_golden:
        write_golden(args.write_golden, job, official)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
