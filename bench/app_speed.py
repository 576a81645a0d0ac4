"""Embedded model speed: the engine called directly vs. through the running app.

Run: python bench/app_speed.py  → bench/results/app_speed.json + app_speed.png
Measures, in one run: `python launch.py` started cold (a new data dir: no converted-model cache) and warm
(the same data dir again): seconds to the page (HTTP 200 on /) and to the model (the console's "ready"
line); the engine's own load, cold and warm; tok/s and time to first token of the engine directly, through
the app with 1 user (the page's own queue protocol, bench/ui_path.py's PageClient, and gradio_client,
whose own overhead is 80-350 ms a call), and with 4 concurrent gradio_client users.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from studio.config import load_config  # noqa: E402
from studio.core.types import GenParams, Message  # noqa: E402
from studio.engines.base import generate  # noqa: E402
from studio.services import build_services  # noqa: E402

PROMPT = "Write a long story about a lighthouse keeper and a storm."
NEW_TOKENS = 128
RUNS = 5  # medians of 5 (one user); the 4-user row is one round
OUT = ROOT / "bench" / "results"
LLAMA_CPP_TOK_S = 97  # llama.cpp on this GGUF on the same 2 cores (the figure issue 15 compares with)


def launch_once(data_dir: Path) -> dict:
    """`python launch.py --data-dir DATA_DIR` in a fresh process: seconds to HTTP 200 on / and to the console's
    "Model chat ready" line (printed within 0.5 s of the engine's ready state, once the page is served)."""
    import subprocess

    import httpx
    from tests.support.apps import free_port

    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), "--data-dir", str(data_dir), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen: dict = {}

    def read() -> None:
        for line in proc.stdout:
            if "ready in" in line:
                seen.setdefault("model_s", time.perf_counter() - started)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while "page_s" not in seen and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200:
                    seen["page_s"] = time.perf_counter() - started
            except httpx.HTTPError:
                time.sleep(0.02)
        while "model_s" not in seen and proc.poll() is None:
            time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(60)
    return seen


def process_starts() -> dict:
    """Cold (new data dir), then warm (the same again) starts of the whole app."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-start-")) / "data"
    try:
        return {"cold": launch_once(data_dir), "warm": launch_once(data_dir), "warm_2": launch_once(data_dir)}
    finally:
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def load_time(cache: Path) -> tuple[float, object]:
    """Seconds from build to a ready engine, and the services."""
    services = build_services(load_config(), Path(tempfile.mkdtemp()), cache_dir=cache)
    t = time.perf_counter()
    st = services.engines.wait("chat", 600)
    assert st.state == "ready", st
    return time.perf_counter() - t, services


def direct(engine) -> dict:
    """Greedy generation through Engine.stream."""
    params = GenParams(max_new_tokens=NEW_TOKENS, do_sample=False, temperature=0.0)
    ttft, rates = [], []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        first = None
        last = None
        for d in generate(engine, [Message.of("user", PROMPT)], params):
            if d.text and first is None:
                first = time.perf_counter()
            if d.finish_reason:
                last = d
        end = time.perf_counter()
        ttft.append(first - t0)
        rates.append((last.completion_tokens - 1) / (end - first))
    return {"ttft_s": statistics.median(ttft), "tok_s": statistics.median(rates), "runs": RUNS}


def client_run(url: str, users: int, runs: int) -> list[dict]:
    """In a separate process (like a browser): `users` sessions at once, `runs` times; raw timings + texts."""
    from gradio_client import Client

    results = []

    def one():
        c = Client(url, verbose=False)
        c.predict("", api_name="/resume")
        t0 = time.perf_counter()
        job = c.submit(PROMPT, max_new_tokens=NEW_TOKENS, do_sample=False, temperature=0.0, api_name="/chat")
        first = None
        for out in job:
            if first is None and out[0] and out[0][-1]["role"] == "assistant":
                first = time.perf_counter()
        end = time.perf_counter()
        text = job.outputs()[-1][0][-1]["content"]
        text = text if isinstance(text, str) else "".join(p.get("text", "") for p in text)
        results.append({"start": t0, "first": first, "end": end, "text": text})

    for _ in range(runs):
        threads = [threading.Thread(target=one) for _ in range(users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return results


def page_run(url: str, runs: int) -> list[dict]:
    """In a separate process: one user speaking the page's queue protocol, `runs` times; raw timings + texts."""
    sys.path.insert(0, str(ROOT / "bench"))
    from ui_path import PageClient, _reply

    from studio.ui.convert import shown_text

    page = PageClient(url)
    page.predict("clear", [None, ""])  # the page load makes a browser's session before it sends
    # The chat event's inputs as the page sends them (bench/ui_path.py): text, State, user id, system prompt
    # box, then Parameters: max_new_tokens, temperature, top_p, top_k, repetition_penalty, do_sample, seed.
    args = [PROMPT, None, "", "", NEW_TOKENS, 0.7, 0.9, 50, 1.1, False, -1]
    results = []
    for _ in range(runs):
        page.predict("clear", [None, ""])
        t0 = time.perf_counter()
        frame = first = None
        outputs = None
        for _msg, outputs in page.events("chat", args):
            if outputs is not None and frame is None:
                frame = time.perf_counter()  # the first frame: the user's message shown
            if outputs and first is None and _reply(outputs[0]).strip():
                first = time.perf_counter()
        end = time.perf_counter()
        results.append({"start": t0, "frame": frame, "first": first, "end": end,
                        "text": shown_text(_reply(outputs[0]))})
    return results


def through_app(url: str, engine, users: int, client: str = "--client") -> dict:
    """The same request through the app over HTTP, from a client process (gradio_client, or "--page")."""
    import subprocess

    runs = RUNS if users == 1 else 1
    out = subprocess.run([sys.executable, __file__, client, url, str(users), str(runs)],
                         capture_output=True, text=True, check=True)
    results = json.loads(out.stdout.strip().splitlines()[-1])
    empty = engine.prepare([Message.of("assistant", "")], GenParams(max_new_tokens=1)).prompt_tokens
    for r in results:
        r["tokens"] = engine.prepare([Message.of("assistant", r.pop("text"))], GenParams(max_new_tokens=1)).prompt_tokens - empty
        r["ttft_s"] = r["first"] - r["start"]
    if users == 1:
        extra = {"first_frame_s": statistics.median(r["frame"] - r["start"] for r in results)} if "frame" in results[0] else {}
        return {**extra, "ttft_s": statistics.median(r["ttft_s"] for r in results),
                "tok_s": statistics.median((r["tokens"] - 1) / (r["end"] - r["first"]) for r in results), "runs": runs}
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    ttfts = sorted(r["ttft_s"] for r in results)
    return {"aggregate_tok_s": sum(r["tokens"] for r in results) / span, "ttft_p50_s": statistics.median(ttfts),
            "ttft_max_s": ttfts[-1], "users": users}


def main() -> None:
    from studio.ui.app import build_app
    from tests.support.apps import free_port

    starts = process_starts()
    cache = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    cold, services = load_time(cache)
    services.close()
    warm, services = load_time(cache)
    engine = services.engines.get("chat")
    info = engine.info()
    res = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "python": platform.python_version()},
           "engine": {"device": info.device, "dtype": info.dtype, **info.extra},
           "process_start": starts, "start": {"cold_s": cold, "warm_s": warm}, "direct": direct(engine)}
    app = build_app(services)
    port = free_port()
    app.blocks.launch(server_port=port, prevent_thread_lock=True, quiet=True, **app.launch_kwargs)
    url = f"http://127.0.0.1:{port}/"
    res["app_1_user_page"] = through_app(url, engine, 1, "--page")
    res["app_1_user"] = through_app(url, engine, 1)
    res["app_4_users"] = through_app(url, engine, 4)
    res["app_vs_direct_tok_s"] = res["app_1_user"]["tok_s"] / res["direct"]["tok_s"]
    res["direct_vs_llama_cpp_tok_s"] = res["direct"]["tok_s"] / LLAMA_CPP_TOK_S
    res["page_ttft_above_direct_ms"] = 1000 * (res["app_1_user_page"]["ttft_s"] - res["direct"]["ttft_s"])
    app.blocks.close()
    services.close()
    shutil.rmtree(cache, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "app_speed.json").write_text(json.dumps(res, indent=2))
    plot(res)
    print(json.dumps(res, indent=2))


def plot(res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(14, 3.8))
    labels = ["direct", "page 1 user", "gradio_client\n1 user", "gradio_client\n4 users"]
    colors = ["#3b82f6", "#14b8a6", "#06b6d4", "#0ea5e9"]
    a.bar(labels, [res["direct"]["tok_s"], res["app_1_user_page"]["tok_s"], res["app_1_user"]["tok_s"],
                   res["app_4_users"]["aggregate_tok_s"]], color=colors)
    a.axhline(50, color="red", ls="--", lw=1, label="target 50 tok/s")
    a.axhline(LLAMA_CPP_TOK_S, color="gray", ls=":", lw=1, label=f"llama.cpp ≈{LLAMA_CPP_TOK_S} tok/s")
    a.set_title("decode tok/s (greedy, 128 new)")
    a.legend(fontsize=8)
    b.bar(labels, [res["direct"]["ttft_s"], res["app_1_user_page"]["ttft_s"], res["app_1_user"]["ttft_s"],
                   res["app_4_users"]["ttft_p50_s"]], color=colors)
    b.set_title("time to first token, s (4 users: p50)")
    ps = res["process_start"]
    c.bar(["cold:\npage", "cold:\nmodel", "warm:\npage", "warm:\nmodel"],
          [ps["cold"]["page_s"], ps["cold"]["model_s"], ps["warm"]["page_s"], ps["warm"]["model_s"]],
          color=["#f59e0b", "#d97706", "#10b981", "#059669"])
    c.axhline(8, color="red", ls="--", lw=1, label="page target 8 s")
    c.legend(fontsize=8)
    c.set_title("python launch.py → page / model ready, s")
    fig.suptitle("Embedded SmolLM2-135M on %d CPU cores" % res["machine"]["cores"])
    fig.tight_layout()
    fig.savefig(OUT / "app_speed.png", dpi=110)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--plot":  # redraw from the saved JSON
        plot(json.loads((OUT / "app_speed.json").read_text()))
    elif len(sys.argv) > 1 and sys.argv[1] == "--client":
        print(json.dumps(client_run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "--page":
        print(json.dumps(page_run(sys.argv[2], int(sys.argv[4]))))
    else:
        main()
