"""The chat UI path against /v1 at N users, measured as browsers are: one client per PROCESS.

The studio runs in its own process (the real launcher). CPU form (default): the scripted engine batches
(`max_batch_size` N) and streams each user's reply at a fixed pace (`--token-s`, 5 ms = 200 tok/s a
user) with next to no CPU, so what is measured is the app's own overhead. GPU form (`--lmdeploy`):
InternLM2-1.8B-shaped random weights on lmdeploy (bench/serving_model.py), the library's own batch of N
measured first (bench/serving_direct.py).

Per user count and path: aggregate tok/s, first token p50/p95, and the server process's CPU seconds per
1000 tokens (utime + stime from /proc; steadier than wall time on a shared machine). Paths:
- `page-proc`: one client per process speaking Gradio's queue protocol as the page's script does (join,
  then the event stream; diffs applied): what a browser costs, without gradio_client's own latency;
- `ui-proc`: one gradio_client per process on `/chat` (as N browsers are);
- `ui-threads`: N gradio_client threads in one process (bench/serving_clients.py; under-reports the UI);
- `v1-proc`: one streaming HTTP client per process on /v1/chat/completions;
- `v1-threads`: N `openai` client threads in one process (bench/serving_clients.py).
Every path gets an untimed round at the same user count first.

    python bench/ui_path.py --users 8 32                      # CPU → bench/results/ui_path.{json,png}
    python bench/ui_path.py --users 32 --profile 20           # + py-spy of the server (needs ptrace)
    python bench/ui_path.py --lmdeploy --tokenizer PATH/tokenizer.model --users 32 --out $OUT   # GPU
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path[:0] = [str(ROOT), str(BENCH)]

from serving_model import prompt

POLL_S = 0.005  # how often a client process looks for a new update (a browser is told at once)
PATHS = ("page-proc", "ui-proc", "ui-threads", "v1-proc", "v1-threads")


def server_cpu_s(pid: int) -> float:
    """utime + stime of process `pid` (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reply(chatbot) -> str:
    """The reply's text in a Chatbot value: its last message, once that is the assistant's."""
    from serving_clients import reply_text

    last = (chatbot or [None])[-1]
    return reply_text([last]) if isinstance(last, dict) and last.get("role") == "assistant" else ""


def _ask_ui(client, i: int, max_new: int, start: float) -> tuple[float, float, str]:
    job = client.submit(prompt(i), max_new_tokens=max_new, do_sample=False, api_name="/chat")
    first, seen = None, 0
    while first is None and not job.done():
        outs = job.outputs()
        if any(_reply(o[0]).strip() for o in outs[seen:]):
            first = time.monotonic() - start
        seen = len(outs)
        time.sleep(POLL_S)
    from studio.ui.convert import shown_text

    text = shown_text(_reply(job.result()[0]))  # without the stats line under a finished reply
    end = time.monotonic()
    return (first if first is not None else end - start), end, text


def _ask_v1(http, i: int, max_new: int, start: float, model: str = "") -> tuple[float, float, str]:
    body = {"model": model, "messages": [{"role": "user", "content": prompt(i)}], "max_tokens": max_new,
            "temperature": 0, "stream": True}
    first, pieces = None, []
    with http.stream("POST", "v1/chat/completions", json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            text = (choices[0].get("delta") or {}).get("content")
            if text:
                first = first if first is not None else time.monotonic() - start
                pieces.append(text)
    return (first if first is not None else time.monotonic() - start), time.monotonic(), "".join(pieces)


class PageClient:
    """Gradio's queue protocol as the page's own script speaks it: join, then one event stream per send."""

    def __init__(self, url: str) -> None:
        import uuid

        import httpx

        self.http = httpx.Client(base_url=url, timeout=600)
        deps = self.http.get("config").json()["dependencies"]
        self.fns = {d["api_name"]: d for d in deps if d.get("api_name")}
        self.session_hash = uuid.uuid4().hex[:11]

    def events(self, api_name: str, data: list):
        """The event's stream messages, each with its outputs so far (diffs applied), until it completes."""
        from gradio_client.utils import apply_diff

        fn = self.fns[api_name]
        self.http.post("gradio_api/queue/join", json={
            "data": data, "event_data": None, "fn_index": fn["id"], "session_hash": self.session_hash,
            "trigger_id": (fn.get("targets") or [[None]])[0][0]}).raise_for_status()
        outputs = None
        with self.http.stream("GET", "gradio_api/queue/data", params={"session_hash": self.session_hash}) as resp:
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                data = (msg.get("output") or {}).get("data")
                if msg.get("msg") == "process_generating" and data is not None:
                    outputs = list(data) if outputs is None else [apply_diff(o, d) for o, d in zip(outputs, data)]
                elif msg.get("msg") == "process_completed":
                    if not msg.get("success", True):
                        raise RuntimeError(f"{api_name}: {msg.get('output')}")
                    yield msg, data
                    return
                yield msg, outputs

    def predict(self, api_name: str, data: list) -> None:
        """Run a short event to its end."""
        for _ in self.events(api_name, data):
            pass


def _ask_page(page: PageClient, i: int, max_new: int, start: float) -> tuple[float, float, str]:
    from studio.ui.convert import shown_text

    first, final = None, None
    # The chat event's inputs as the page sends them: text, the session State (the server holds it), the
    # user id, the system prompt box (empty: the conversation's own) and the Parameters controls.
    args = [prompt(i), None, "", "", max_new, 0.7, 0.9, 50, 1.1, False, -1]
    for msg, outputs in page.events("chat", args):
        if outputs and first is None and _reply(outputs[0]).strip():
            first = time.monotonic() - start
        final = outputs
    end = time.monotonic()
    return (first if first is not None else end - start), end, shown_text(_reply(final[0]))


def _open(url: str, kind: str):
    """The user's client and how it asks: a gradio_client or the page's protocol on its own session, or an
    HTTP client for /v1."""
    if kind == "page":
        page = PageClient(url)
        page.predict("clear", [None, ""])  # the page load makes a browser's session before it sends
        return page, _ask_page
    if kind == "ui":
        from gradio_client import Client

        client = Client(url, verbose=False)
        client.predict(api_name="/clear")  # the page load makes a browser's session before it sends
        return client, _ask_ui
    import httpx

    client = httpx.Client(base_url=url, timeout=600)
    return client, functools.partial(_ask_v1, model=client.get("v1/models").json()["data"][0]["id"])


def _worker(url: str, kind: str, i: int, conn) -> None:
    """One user's process: open the page when told, then answer each (max_new, start_at) sent."""
    conn.recv()
    try:
        client, ask = _open(url, kind)
        conn.send("ready")
    except Exception as exc:
        conn.send(f"{type(exc).__name__}: {exc}")
        return
    while (msg := conn.recv()) is not None:
        max_new, start_at = msg
        time.sleep(max(0.0, start_at - time.monotonic()))
        try:
            conn.send(ask(client, i, max_new, start_at))
        except Exception as exc:  # reported as the row's error, the other users go on
            conn.send(f"{type(exc).__name__}: {exc}")
        if kind in ("ui", "page"):  # the next round is a new conversation of one question
            client.predict("clear", [None, ""]) if kind == "page" else client.predict(api_name="/clear")
        conn.send("settled")


class Users:
    """N client processes of one kind ("ui" or "v1"), kept across rounds."""

    def __init__(self, url: str, kind: str, n: int) -> None:
        ctx = mp.get_context("spawn")
        self.pipes, self.procs = [], []
        for i in range(n):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(url, kind, i, theirs), daemon=True)
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)
        for p in self.pipes:  # one page load at a time, as a class's browsers open the page over a minute
            p.send("open")
            if (answer := p.recv()) != "ready":
                raise RuntimeError(answer)

    def round(self, max_new: int, cpu=lambda: 0.0, lead_s: float = 1.0) -> tuple[float, list, float]:
        """Every user sends at the same moment; (wall s, [(first s, end, text)], `cpu()` at the last reply)."""
        start_at = time.monotonic() + lead_s
        for p in self.pipes:
            p.send((max_new, start_at))
        results = [p.recv() for p in self.pipes]
        cpu_end = cpu()
        for p in self.pipes:
            p.recv()  # "settled": the clear after the reply is not part of the round's server CPU
        errors = [r for r in results if isinstance(r, str)]
        if errors:
            raise RuntimeError(f"{len(errors)} users failed, e.g. {errors[0]}")
        return max(r[1] for r in results) - start_at, results, cpu_end

    def close(self) -> None:
        """End the processes."""
        for p in self.pipes:
            p.send(None)
        for proc in self.procs:
            proc.join(30)


def _threads_round(path: str, url: str, n: int, max_new: int, cpu=lambda: 0.0) -> tuple[float, list, float]:
    from serving_clients import api_users, ui_users

    from studio.ui.convert import shown_text

    wall, results = (ui_users if path == "ui-threads" else api_users)(url, n, max_new)
    cpu_end = cpu()
    # The UI's replies without the stats line under them (/v1 gives the usage's token count).
    return wall, [(first, None, shown_text(out) if isinstance(out, str) else out) for first, out in results], cpu_end


def measure(url: str, pid: int, path: str, n: int, max_new: int, count, spy=None, rounds: int = 1) -> dict:
    """One path at `n` users: an untimed round, then `rounds` timed ones; the summary row of the median
    round by tok/s (every round's tok/s beside it). `spy()` starts a profile once the users' pages are open."""
    from serving_direct import summary

    users = Users(url, path.split("-")[0], n) if path.endswith("proc") else None
    if spy:
        spy()
    timed = []
    try:
        go = users.round if users else (lambda m, cpu: _threads_round(path, url, n, m, cpu))
        go(max_new, lambda: 0.0)
        for _ in range(rounds):
            cpu0 = server_cpu_s(pid)
            wall, results, cpu_end = go(max_new, lambda: server_cpu_s(pid))
            tokens = [r[2] if isinstance(r[2], int) else count(r[2]) for r in results]  # /v1 threads: usage
            row = summary(path, n, wall, [r[0] for r in results], tokens)
            row["server_cpu_s_per_1k_tokens"] = round(1000 * (cpu_end - cpu0) / max(1, sum(tokens)), 3)
            timed.append(row)
    finally:
        if users:
            users.close()
    row = sorted(timed, key=lambda r: r["tok_s"])[len(timed) // 2]
    if rounds > 1:
        row = {**row, "rounds": rounds, "tok_s_rounds": [r["tok_s"] for r in timed],
               "first_p95_s_rounds": [r["first_p95_s"] for r in timed]}
    print(json.dumps(row), flush=True)
    return row


def scripted_config(folder: Path, n: int, token_s: float) -> Path:
    """The batching scripted engine's config."""
    path = folder / "ui-path.yaml"
    path.write_text(f"ui:\n  queue_max_size: {8 * n}\nengines:\n  chat:\n    engine: scripted\n"
                    f"    model_path: script:long\n    max_batch_size: {n}\n    token_s: {token_s}\n",
                    encoding="utf-8")
    return path


def launch(cmd: list[str], port: int, work: Path) -> tuple[subprocess.Popen, str]:
    """The studio in its own process; returns it once the page is served."""
    from serving_gpu import wait_http

    url = f"http://127.0.0.1:{port}/"
    log = (work / "studio.log").open("w")
    proc = subprocess.Popen([*cmd, "--port", str(port), "--data-dir", str(work / "data")], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    wait_http(url, proc)
    return proc, url


def profile(pid: int, seconds: int, out: Path) -> subprocess.Popen:
    """py-spy on the server for `seconds` (all threads, idle ones left out), as a speedscope file."""
    spy = Path(sys.executable).with_name("py-spy")
    spy = spy if spy.exists() else Path(shutil.which("py-spy") or "py-spy")
    return subprocess.Popen([str(spy), "record", "-p", str(pid), "-d", str(seconds), "-r", "200", "-f", "raw",
                             "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def library_rows(args, work: Path) -> tuple[list, object, Path]:
    """GPU form: the checkpoint, the library's own batch (serving_direct) and the studio command."""
    from serving_gpu import direct_phase, studio_config
    from serving_model import LM_1_8B, write_checkpoint

    model = write_checkpoint(work / "internlm2-1.8b-shaped", Path(args.tokenizer), LM_1_8B)
    direct = direct_phase("lmdeploy", model, args.users, args.max_new, work, 1)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    cmd = [sys.executable, str(ROOT / "launch.py"), "--config", str(studio_config("lmdeploy", model, max(args.users), work))]
    return direct["rows"], lambda text: len(tok(text, add_special_tokens=False)["input_ids"]), cmd


def scripted_rows(args, work: Path) -> tuple[list, object, list]:
    """CPU form: the scripted engine's own pace at N threads (the 'library' level) and the studio command."""
    from concurrent.futures import ThreadPoolExecutor

    from serving_direct import summary

    from studio.core.types import GenParams, Message
    from studio.engines.base import generate
    from tests.support.scripted import (
        ScriptedOptions,
        load_scripted,
        scripted_registered,
    )

    with scripted_registered():
        cfg = ScriptedOptions(model_path="script:long", max_batch_size=max(args.users), token_s=args.token_s)
        engine = load_scripted(cfg, None)
    rows = []
    for n in args.users:
        def one(i, start):
            first = None
            for d in generate(engine, [Message.of("user", prompt(i))], GenParams(max_new_tokens=args.max_new)):
                first = first if first is not None or not d.text else time.monotonic() - start
            return first

        start = time.monotonic()
        with ThreadPoolExecutor(n) as pool:
            firsts = list(pool.map(one, range(n), [start] * n))
        rows.append(summary("library", n, time.monotonic() - start, firsts, [args.max_new] * n))
    cmd = [sys.executable, "-m", "tests.support.launch_scripted", "--config",
           str(scripted_config(work, max(args.users), args.token_s))]
    return rows, lambda text: len(text.split()), cmd


def run(args) -> Path:
    from tests.support.apps import free_port

    work = Path(tempfile.mkdtemp(prefix="ui-path-", dir=args.work))
    rows, count, cmd = (library_rows if args.lmdeploy else scripted_rows)(args, work)
    for r in rows:
        print(json.dumps(r), flush=True)
    proc, url = launch(cmd, free_port(), work)
    spies: list = []
    try:
        _threads_round("ui-threads", url, 1, 8)  # waits for the model to be ready
        for n in args.users:
            for path in args.paths:
                spy = None
                if args.profile and n == max(args.users) and path == args.paths[0]:
                    def spy():
                        spies.append(profile(proc.pid, args.profile, Path(args.out) / "ui_path-profile.txt"))
                try:
                    rows.append(measure(url, proc.pid, path, n, args.max_new, count, spy, args.rounds))
                except Exception as exc:  # the other paths' figures stay
                    rows.append({"level": path, "users": n, "error": f"{type(exc).__name__}: {exc}"})
                    print(json.dumps(rows[-1]), flush=True)
        for s in spies:
            s.wait(args.profile + 60)
    finally:
        proc.terminate()
        proc.wait(60)
    return report(args, rows)


def ratios(rows: list[dict]) -> dict:
    """Each path's tok/s over the library's at the same user count."""
    lib = {r["users"]: r["tok_s"] for r in rows if r["level"] == "library"}
    return {f"{r['level']}/library@{r['users']}": round(r["tok_s"] / lib[r["users"]], 3)
            for r in rows if "tok_s" in r and r["level"] != "library" and r["users"] in lib}


def report(args, rows: list[dict]) -> Path:
    """bench/results-style JSON + PNG."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "ui_path-lmdeploy" if args.lmdeploy else "ui_path"
    data = {"form": "lmdeploy" if args.lmdeploy else f"scripted, {args.token_s * 1000:g} ms a token",
            "max_new": args.max_new, "cpus": os.cpu_count(), "rows": rows, "ratios": ratios(rows)}
    (out / f"{name}.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    print(json.dumps(data["ratios"]))
    plot(data, out / f"{name}.png")
    return out / f"{name}.json"


def plot(data: dict, path: Path) -> None:
    """tok/s over the library's, and p95 first token, per path and user count."""
    try:
        import matplotlib
    except ImportError:  # the studio's venv has no matplotlib: the JSON alone
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in data["rows"] if "tok_s" in r]
    users = sorted({r["users"] for r in rows})
    levels = [lv for lv in ("library", *PATHS) if any(r["level"] == lv for r in rows)]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / len(levels)
    for k, lv in enumerate(levels):
        by = {r["users"]: r for r in rows if r["level"] == lv}
        xs = [j + k * width for j, n in enumerate(users) if n in by]
        a.bar(xs, [by[n]["tok_s"] for n in users if n in by], width, label=lv)
        b.bar(xs, [by[n]["first_p95_s"] for n in users if n in by], width, label=lv)
    for ax, label in ((a, "aggregate tok/s"), (b, "first token p95 (s)")):
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(users))], [f"{n} users" for n in users])
        ax.set_ylabel(label)
    b.axhline(0.5, color="gray", linewidth=0.8)
    a.legend(fontsize=7)
    fig.suptitle(f"chat UI vs /v1 — {data['form']}, {data['max_new']} tokens a user")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    ap.add_argument("--max-new", type=int, default=128)
    ap.add_argument("--token-s", type=float, default=0.005, help="scripted engine: seconds per token a user")
    ap.add_argument("--lmdeploy", action="store_true", help="the GPU form (needs --tokenizer)")
    ap.add_argument("--tokenizer", help="the real InternLM2 tokenizer.model (--lmdeploy)")
    ap.add_argument("--rounds", type=int, default=1, help="timed rounds per path (the median's row is kept)")
    ap.add_argument("--profile", type=int, default=0, help="py-spy the server this many seconds (the first path, most users)")
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--work", default=tempfile.gettempdir())
    print(run(ap.parse_args()))


if __name__ == "__main__":
    main()
