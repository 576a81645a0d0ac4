"""Serving speed on one GPU: HF vs lmdeploy, the engine called directly vs through the studio.

InternLM2-Chat-1.8B-shaped random weights (bench/serving_model.py) with the real InternLM2
tokenizer. For each engine, in separate processes so that memory is measured cleanly:
1. direct (bench/serving_direct.py): the library itself (transformers `generate` with a batch of N;
   lmdeploy's pipeline with N conversations), then the studio's engine object with N threads;
2. studio: `python launch.py --config …` (the real launcher) and N concurrent users over HTTP:
   gradio_client on the chat tab's `/chat`, and (lmdeploy) the `openai` client on `/v1`.
Every user asks its own question for 128 greedy tokens. Reported: aggregate tok/s, p50/p95
first-token latency, peak GPU memory of the phase (nvidia-smi, device total minus the idle level).

Run (GPU machine, lmdeploy + gradio bundle on PYTHONPATH):
    python bench/serving_gpu.py --tokenizer PATH/tokenizer.model --engines hf --out $OUT
    python bench/serving_gpu.py --tokenizer PATH/tokenizer.model --engines lmdeploy --out $OUT
Two GPUs (InternLM2-7B shape, lmdeploy tp=2 / transformers device_map over both): add --shape 7b --num-gpus 2.
Then on the CPU machine:  python bench/serving_gpu.py --merge A.json B.json   (→ bench/results/serving_gpu.*)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))


class GpuMemory:
    """Samples the device's used memory (nvidia-smi) in the background; peak over the idle level."""

    def __init__(self, period: float = 0.2) -> None:
        self.idle_each = self.read_each()
        self.period, self.idle, self.peak = period, sum(self.idle_each), 0.0
        self.peak_each = list(self.idle_each)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @staticmethod
    def read_each() -> list[float]:
        """GiB used on each GPU (nvidia-smi); [nan] without it."""
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout
            return [float(v) / 1024 for v in out.split()] or [float("nan")]
        except Exception:  # no nvidia-smi: no memory figure
            return [float("nan")]

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            each = self.read_each()
            self.peak = max(self.peak, sum(each))
            self.peak_each = [max(a, b) for a, b in zip(self.peak_each, each)]

    def per_device(self) -> list[float]:
        """Peak over idle on each GPU (after stop)."""
        return [round(p - i, 2) for p, i in zip(self.peak_each, self.idle_each)]

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak - self.idle, 2)


def direct_phase(engine: str, model: Path, users: list[int], max_new: int, work: Path, gpus: int) -> dict:
    out = work / f"direct-{engine}.json"
    mem = GpuMemory()
    subprocess.run([sys.executable, str(BENCH / "serving_direct.py"), "--engine", engine, "--model", str(model),
                    "--out", str(out), "--max-new", str(max_new), "--num-gpus", str(gpus),
                    "--users", *map(str, users)], check=True)
    peak = mem.stop()
    data = json.loads(out.read_text(encoding="utf-8"))
    data["peak_gib"], data["peak_gib_per_gpu"] = peak, mem.per_device()
    return data


def studio_config(engine: str, model: Path, max_users: int, folder: Path) -> Path:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    chat = (f"    engine: hf\n    device: {device}\n    dtype: bfloat16\n    context_window: 4096\n" if engine == "hf" else
            f"    engine: lmdeploy\n    backend: pytorch\n    session_len: 4096\n    max_batch_size: {max_users}\n")
    path = folder / f"studio-{engine}.yaml"
    path.write_text(f"ui:\n  queue_max_size: {4 * max_users}\nengines:\n  chat:\n{chat}"
                    f"    model_path: {model}\n", encoding="utf-8")
    return path


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the studio exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read(1)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


def studio_phase(engine: str, model: Path, users: list[int], max_new: int, work: Path, api: bool,
                 gpus: int = 1) -> dict:
    """The real launcher in its own process; users over HTTP from this one."""
    from serving_clients import api_users, ui_users
    from serving_direct import summary
    from transformers import AutoTokenizer

    from tests.support.apps import free_port

    tok = AutoTokenizer.from_pretrained(model)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = (work / f"studio-{engine}.log").open("w")
    mem = GpuMemory()
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), "--config",
                             str(studio_config(engine, model, max(users), work)), "--port", str(port),
                             "--data-dir", str(work / f"data-{engine}"), "--num-gpus", str(gpus)],
                            stdout=log, stderr=subprocess.STDOUT)
    rows = []
    try:
        wait_http(url, proc)
        ui_users(url, 1, 8)  # waits for the model to be ready
        ready_s = round(time.monotonic() - t0, 1)
        log.flush()
        plan = [line.strip() for line in (work / f"studio-{engine}.log").read_text(encoding="utf-8").splitlines()
                if line.startswith("Model ")]  # the launcher's memory plan, to compare with the measured peak
        for n in users:
            ui_users(url, n, max_new if engine == "lmdeploy" else 8)  # untimed round at this user count
            wall, results = ui_users(url, n, max_new)
            reenc = [len(tok(text, add_special_tokens=False)["input_ids"]) for _, text in results]
            row = summary("studio-ui", n, wall, [r[0] for r in results], [max_new] * n)
            row["reencoded_tokens_mean"] = round(sum(reenc) / n, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
        for n in users if api else []:
            try:
                api_users(url, n, max_new)
                wall, results = api_users(url, n, max_new)
                rows.append(summary("studio-api", n, wall, [r[0] for r in results], [r[1] for r in results]))
            except Exception as exc:  # keep the other figures; the row says what failed
                rows.append({"level": "studio-api", "users": n, "error": f"{type(exc).__name__}: {exc}"})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return {"rows": rows, "peak_gib": mem.stop(), "peak_gib_per_gpu": mem.per_device(), "ready_s": ready_s,
            "plan": plan}


def run(args) -> Path:
    from serving_model import write_checkpoint

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    from serving_model import LM_1_8B, LM_7B, TINY

    shape = "tiny" if args.tiny else args.shape
    model = write_checkpoint(work / f"internlm2-{shape}-shaped", Path(args.tokenizer),
                             {"tiny": TINY, "1.8b": LM_1_8B, "7b": LM_7B}[shape])
    print(f"checkpoint ready in {time.monotonic() - t0:.0f} s", flush=True)
    import torch

    result = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "shape": shape, "num_gpus": args.num_gpus, "torch": torch.__version__, "max_new": args.max_new,
              "engines": {}}
    suffix = "" if (shape, args.num_gpus) == ("1.8b", 1) else f"-{shape}-tp{args.num_gpus}"
    out = Path(args.out) / f"serving_gpu-{'-'.join(args.engines)}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for engine in args.engines:
        result["engines"][engine] = {"direct": direct_phase(engine, model, args.users, args.max_new, work,
                                                            args.num_gpus)}
        out.write_text(json.dumps(result, indent=1), encoding="utf-8")  # kept if the next phase fails
        result["engines"][engine]["studio"] = studio_phase(engine, model, args.users, args.max_new, work,
                                                           api=engine == "lmdeploy", gpus=args.num_gpus)
        out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", help="the real InternLM2 tokenizer.model")
    ap.add_argument("--engines", nargs="+", default=["hf", "lmdeploy"], choices=["hf", "lmdeploy"])
    ap.add_argument("--users", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--max-new", type=int, default=128)
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "puyu-serving"))
    ap.add_argument("--shape", choices=["1.8b", "7b"], default="1.8b", help="InternLM2-Chat-1.8B or -7B's shape")
    ap.add_argument("--num-gpus", type=int, default=1, help="passed to the engines and to launch.py --num-gpus")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model: a dry run of the scripts (CPU is fine)")
    ap.add_argument("--merge", nargs="+", help="merge per-engine JSON files into bench/results/serving_gpu.json + png")
    args = ap.parse_args()
    if args.merge:
        from serving_report import merge

        print(merge([Path(p) for p in args.merge], BENCH / "results"))
        return
    print(run(args))


if __name__ == "__main__":
    main()
