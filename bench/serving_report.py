"""Merge the per-engine runs of bench/serving_gpu.py into serving_gpu.json + .png and print the tables."""

from __future__ import annotations

import json
from pathlib import Path

LEVELS = ["library", "engine", "studio-ui", "studio-api"]
LABELS = {"library": "library directly", "engine": "studio engine, direct", "studio-ui": "through the studio (UI)",
          "studio-api": "through the studio (/v1 API)"}


def greedy_check(hf: dict, lmd: dict) -> list[dict]:
    """Per prompt: equal prompt lengths, how many of the first 32 greedy tokens agree, HF's top-2 logit
    margin where they part (a margin of one bf16 step means the two kernels broke a tie differently)."""
    rows = []
    for i, (a, b) in enumerate(zip(hf["ids"], lmd["ids"])):
        same = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
        rows.append({"prompt": i, "prompt_tokens": [len(hf["prompt_ids"][i]), lmd["prompt_tokens"][i]],
                     "same_first": same, "of": len(a),
                     "hf_margin_at_split": hf["margins"][i][same] if same < len(a) else None})
    return rows


def ratios(rows: list[dict]) -> dict:
    """Through-the-studio tok/s over the engine called directly, and over the library, per user count."""
    by = {(r["level"], r["users"]): r for r in rows if "tok_s" in r}
    out = {}
    for (level, users), r in by.items():
        if level.startswith("studio") and ("engine", users) in by:
            out[f"{level}/engine@{users}"] = round(r["tok_s"] / by[("engine", users)]["tok_s"], 3)
        if level != "library" and ("library", users) in by:
            out[f"{level}/library@{users}"] = round(r["tok_s"] / by[("library", users)]["tok_s"], 3)
    return out


def table(name: str, data: dict) -> str:
    rows = data["direct"]["rows"] + data["studio"]["rows"]
    lines = [f"**{name}** — load {data['direct']['load_s']} s (direct), studio ready in {data['studio']['ready_s']} s; "
             f"peak GPU memory {data['direct']['peak_gib']} GiB (direct phase) / {data['studio']['peak_gib']} GiB "
             "(studio phase)", "",
             "| path | users | tok/s (aggregate) | first token p50 / p95 |", "|---|---|---|---|"]
    for level in LEVELS:
        for r in sorted((r for r in rows if r["level"] == level and "tok_s" in r), key=lambda r: r["users"]):
            lines.append(f"| {LABELS[level]} | {r['users']} | {r['tok_s']:,.0f} | "
                         f"{r['first_p50_s'] * 1000:,.0f} ms / {r['first_p95_s'] * 1000:,.0f} ms |")
    return "\n".join(lines)


def plot(merged: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"library": ":", "engine": "--", "studio-ui": "-", "studio-api": "-."}
    colors = {"hf": "tab:orange", "lmdeploy": "tab:blue"}
    for name, data in merged["engines"].items():
        rows = data["direct"]["rows"] + data["studio"]["rows"]
        for level in LEVELS:
            pts = sorted((r["users"], r["tok_s"], r["first_p95_s"]) for r in rows if r["level"] == level and "tok_s" in r)
            if not pts:
                continue
            kw = {"color": colors[name], "linestyle": styles[level], "marker": "o", "label": f"{name}: {LABELS[level]}"}
            a.plot([p[0] for p in pts], [p[1] for p in pts], **kw)
            b.plot([p[0] for p in pts], [p[2] for p in pts], **kw)
    for ax, label in ((a, "aggregate tok/s"), (b, "first token p95 (s)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks([1, 8, 32], ["1", "8", "32"])
        ax.set_xlabel("concurrent users")
        ax.set_ylabel(label)
    b.axhline(0.5, color="gray", linewidth=0.8)
    a.legend(fontsize=7)
    fig.suptitle(f"InternLM2-1.8B-shaped random weights, bf16, 128 greedy tokens per user — {merged['device']}")
    fig.tight_layout()
    path = out / "serving_gpu.png"
    fig.savefig(path, dpi=110)
    return path


def merge(paths: list[Path], out: Path) -> str:
    """serving_gpu.json (+ ratios and the greedy check) and serving_gpu.png in `out`; returns the tables."""
    merged: dict = {"engines": {}}
    for p in paths:
        data = json.loads(Path(p).read_text(encoding="utf-8"))
        merged.update({k: v for k, v in data.items() if k != "engines"})
        merged["engines"].update(data["engines"])
    for data in merged["engines"].values():
        data["ratios"] = ratios(data["direct"]["rows"] + data["studio"]["rows"])
    if {"hf", "lmdeploy"} <= set(merged["engines"]):
        merged["greedy_hf_vs_lmdeploy"] = greedy_check(merged["engines"]["hf"]["direct"]["greedy"],
                                                       merged["engines"]["lmdeploy"]["direct"]["greedy"])
    (out / "serving_gpu.json").write_text(json.dumps(merged, indent=1), encoding="utf-8")
    plot(merged, out)
    text = [table(name, data) for name, data in merged["engines"].items()]
    text += [json.dumps(data["ratios"]) for data in merged["engines"].values()]
    text += [json.dumps(r) for r in merged.get("greedy_hf_vs_lmdeploy", [])]
    return "\n\n".join(text)
