"""Model downloads against local fake Hugging Face and ModelScope hubs (offline): sub-folders, resume after
a kill -9 (bytes re-fetched counted), hash mismatch, 404 / 401 / dropped connections / a full disk, cancel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from studio.config import DownloadsConfig
from studio.hub.download import DownloadRequest, Downloads
from studio.hub.download_folder import (
    MARKER,
    PARTIAL_DIR,
    is_complete,
    part_path,
    partial_state,
    read_record,
)
from tests.support.apps import REPO
from tests.support.fake_hub import SEND, fake_hub, make_repo
from tests.support.tmpfs import fill, tiny_tmpfs
from tests.support.waits import wait_until

BIG = "weights/model.safetensors"  # in a sub-folder, served as an LFS file (sha256)
HELD = 5 * SEND  # bytes the hub sends before it stalls, for the kill -9


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    rng = __import__("random").Random(17)
    files = {"config.json": b'{"architectures": ["InternLM2ForCausalLM"]}', "tokenizer.model": rng.randbytes(4000),
             BIG: rng.randbytes(2 * 1024 * 1024 + 123), "sub/dir/extra.txt": b"small file, a git blob\n"}
    make_repo(root, "internlm/tiny", files)
    with fake_hub(root) as server:
        server.repo_files = files
        yield server


@pytest.fixture(autouse=True)
def clean_faults(hub):
    from tests.support.fake_hub import Faults

    hub.faults, hub.served[:] = Faults(), []
    hub.release.clear()
    yield
    hub.release.set()


def downloads(tmp: Path, hub, **cfg) -> Downloads:
    config = DownloadsConfig(hf_endpoint=hub.url, modelscope_endpoint=hub.url, retry_wait_s=0.01, **cfg)
    return Downloads(tmp / "state", config, tmp / "models")


def run(d: Downloads, source: str, dest: Path, repo: str = "internlm/tiny"):
    return d.wait(d.start(DownloadRequest(source, repo, dest=dest)))


def assert_files(hub, dest: Path) -> None:
    for rel, data in hub.repo_files.items():
        assert (dest / rel).read_bytes() == data, rel


@pytest.fixture
def no_login(monkeypatch):
    """No token from this machine's environment or `hf auth login`."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("MODELSCOPE_API_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
def test_repo_with_subfolders_from_each_hub(tmp_path, hub, source, no_login):
    st = run(downloads(tmp_path, hub), source, tmp_path / "m")
    assert (st.state, st.error) == ("done", "")
    assert (st.files_done, st.files_total, st.done_bytes) == (4, 4, sum(map(len, hub.repo_files.values())))
    assert_files(hub, tmp_path / "m")
    assert is_complete(tmp_path / "m") and partial_state(tmp_path / "m").state == "complete"
    assert not (tmp_path / "m" / PARTIAL_DIR).exists()
    assert {s.hub for s in hub.served} == {"hf" if source == "huggingface" else "ms"}
    assert all(s.authorization == "" for s in hub.served)  # no token configured: none sent
    # A second start finds every file verified: nothing is fetched again.
    hub.served[:] = []
    assert run(downloads(tmp_path, hub), source, tmp_path / "m").state == "done"
    assert hub.sent(BIG) == 0


def test_killed_cli_resumes_from_its_partial_bytes(tmp_path, hub):
    hub.faults.hold_after[BIG] = HELD
    dest, data = tmp_path / "m", tmp_path / "data"
    cmd = [sys.executable, "launch.py", "models", "download", "internlm/tiny", "--endpoint", hub.url,
           "--dest", str(dest), "--data-dir", str(data)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part = part_path(dest, BIG)
    wait_until(lambda: part.exists() and part.stat().st_size == HELD, "the partial file to hold the sent bytes",
               progress=lambda: part.exists() and part.stat().st_size)
    assert not is_complete(dest) and partial_state(dest).state == "partial"
    other = run(downloads(tmp_path, hub), "huggingface", dest)  # the studio, while the terminal downloads
    assert other.state == "failed" and "being downloaded by another studio or terminal" in other.error
    assert part.stat().st_size == HELD
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    hub.faults.hold_after.clear()
    hub.release.set()
    status = subprocess.run([sys.executable, "launch.py", "models", "status", "--data-dir", str(data)], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert "interrupted" in status.stdout and "internlm/tiny" in status.stdout
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Downloaded internlm/tiny" in r.stdout
    assert_files(hub, dest) and is_complete(dest)
    size = len(hub.repo_files[BIG])
    last = hub.gets(BIG)[-1]
    assert (last.start, last.sent, last.status) == (HELD, size - HELD, 206)  # Range from the bytes on disk
    assert hub.sent(BIG) < size + SEND  # re-fetched: less than one chunk beyond what was on disk
    assert hub.sent("config.json") == len(hub.repo_files["config.json"])  # a finished file is not fetched again


def test_studio_stop_then_restart_resumes_unfinished(tmp_path, hub):
    hub.faults.hold_after[BIG] = HELD
    d = downloads(tmp_path, hub)
    job = d.start(DownloadRequest("modelscope", "internlm/tiny", dest=tmp_path / "m"))
    wait_until(lambda: d.state(job).done_bytes >= HELD + 4000, "the held bytes", progress=lambda: d.state(job))
    d.close()  # while the hub stalls: the stop cuts the connection at once
    assert d.state(job).state == "downloading"  # stopped, not cancelled
    hub.faults.hold_after.clear()
    hub.release.set()
    seen = len(hub.served)
    again = downloads(tmp_path, hub)
    assert len(hub.served) == seen  # starting the studio contacts no hub by itself
    (before,) = again.jobs()
    assert before.state == "downloading" and before.files_total == 4 and before.done_bytes >= HELD
    assert again.resume_unfinished() == [job]
    st = again.wait(job)
    assert st.state == "done" and st.resumed_bytes >= HELD
    assert_files(hub, tmp_path / "m")
    assert hub.gets(BIG)[-1].start >= HELD


def test_corrupted_file_is_refetched_once_then_reported(tmp_path, hub):
    hub.faults.corrupt[BIG] = 1
    assert run(downloads(tmp_path, hub), "huggingface", tmp_path / "a").state == "done"
    assert len(hub.gets(BIG)) == 2 and hub.gets(BIG)[-1].start == 0
    assert_files(hub, tmp_path / "a")
    hub.faults.corrupt[BIG] = 2
    st = run(downloads(tmp_path, hub), "modelscope", tmp_path / "b")
    assert st.state == "failed" and "does not match its published sha256 hash" in st.error
    assert st.error_key == "dl_hash_mismatch"
    assert not is_complete(tmp_path / "b") and not (tmp_path / "b" / BIG).exists()
    assert read_record(tmp_path / "b")["state"] == "partial"


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
def test_missing_and_private_repos_say_so(tmp_path, hub, source):
    d = downloads(tmp_path, hub)
    st = run(d, source, tmp_path / "a", repo="internlm/no-such-model")
    assert st.state == "failed" and "was not found on" in st.error and "owner/name" in st.hint
    hub.faults.refuse["internlm/tiny"] = 401
    st = run(d, source, tmp_path / "b")
    assert st.state == "failed" and "is private or gated (HTTP 401)" in st.error
    assert ("HF_TOKEN" if source == "huggingface" else "MODELSCOPE_API_TOKEN") in st.hint
    assert not (tmp_path / "b" / MARKER).exists()


def test_tokens_go_to_the_hub_and_never_into_records(tmp_path, hub, monkeypatch):
    d = downloads(tmp_path, hub, hf_token="hf_secret_token_1234", modelscope_token="ms_secret_token_5678")
    assert run(d, "huggingface", tmp_path / "m").state == "done"
    assert {s.authorization for s in hub.served} == {"Bearer hf_secret_token_1234"}
    hub.served[:] = []
    assert run(d, "modelscope", tmp_path / "s").state == "done"
    assert {s.cookie for s in hub.served} == {"m_session_id=ms_secret_token_5678"}  # as ModelScope's client sends it
    monkeypatch.setenv("HF_TOKEN", "hf_from_the_environment")  # no token in the config: the environment's
    hub.served[:] = []
    assert run(downloads(tmp_path, hub), "huggingface", tmp_path / "m").state == "done"
    assert {s.authorization for s in hub.served} == {"Bearer hf_from_the_environment"}
    stored = [p.read_text() for p in (tmp_path / "state").glob("*.json")]
    stored += [(tmp_path / m / MARKER).read_text() for m in ("m", "s")]
    assert not any("secret" in text for text in stored)
    assert "secret" not in repr(d.config)


def test_dropped_connections_are_retried_then_reported(tmp_path, hub):
    hub.faults.drop_after[BIG] = [300_000, 3]  # three drops, each after some progress
    st = run(downloads(tmp_path, hub, retries=2), "huggingface", tmp_path / "a")
    assert st.state == "done"
    starts = [s.start for s in hub.gets(BIG)]
    assert starts == [0, 300_000, 600_000, 900_000]
    assert_files(hub, tmp_path / "a")
    hub.faults.drop_after[BIG] = [0, 99]  # no byte ever arrives
    hub.served[:] = []
    st = run(downloads(tmp_path, hub, retries=2), "huggingface", tmp_path / "b")
    assert st.state == "failed" and "kept dropping" in st.error and "3 attempts" in st.error
    assert "resumes" in st.hint and len(hub.gets(BIG)) == 3


def test_no_network_names_the_host(tmp_path, hub):
    d = downloads(tmp_path, hub, retries=0)
    st = d.wait(d.start(DownloadRequest("huggingface", "internlm/tiny", dest=tmp_path / "m",
                                        endpoint="http://hub.invalid")))
    assert st.state == "failed" and st.error.startswith("Cannot reach hub.invalid") and "mirror" in st.hint


def test_full_disk_before_and_during_a_file(tmp_path, hub):
    with tiny_tmpfs(tmp_path / "small", size_kib=512) as small:
        st = run(downloads(tmp_path, hub), "huggingface", small / "m")
        assert st.state == "failed" and "is full" in st.error and st.error_key == "dl_disk_full"
    with tiny_tmpfs(tmp_path / "fills", size_kib=4096) as disk:
        filler = []
        hub.faults.before_body = lambda rel: filler.append(fill(disk)) if rel == BIG and not filler else None
        st = run(downloads(tmp_path, hub), "modelscope", disk / "m")
        assert st.state == "failed" and "is full" in st.error and "resumes" in st.hint
        assert not is_complete(disk / "m")
        filler[0].unlink()  # space again: the same download goes on
        hub.faults.before_body = None
        assert run(downloads(tmp_path, hub), "modelscope", disk / "m").state == "done"
        assert_files(hub, disk / "m")


def test_cancel_stops_at_once_and_keeps_the_partial(tmp_path, hub):
    hub.faults.hold_after[BIG] = HELD  # the hub stalls mid-file: only cutting the connection ends the read
    d = downloads(tmp_path, hub, timeout_s=300)
    job = d.start(DownloadRequest("huggingface", "internlm/tiny", dest=tmp_path / "m"))
    part = part_path(tmp_path / "m", BIG)
    wait_until(lambda: part.exists() and part.stat().st_size == HELD, "the held bytes", progress=lambda: d.state(job))
    d.cancel(job)
    st = d.wait(job)
    assert st.state == "cancelled" and part.stat().st_size == HELD
    assert not is_complete(tmp_path / "m")
    hub.faults.hold_after.clear()
    hub.release.set()
    assert d.start(DownloadRequest("huggingface", "internlm/tiny", dest=tmp_path / "m")) == job  # same job again
    st = d.wait(job)
    assert st.state == "done" and st.resumed_bytes >= HELD
    assert hub.gets(BIG)[-1].start == HELD
    assert_files(hub, tmp_path / "m")


def test_ctrl_c_in_the_terminal_cancels_and_keeps_the_partial(tmp_path, hub):
    hub.faults.hold_after[BIG] = HELD
    dest, data = tmp_path / "m", tmp_path / "data"
    cmd = [sys.executable, "launch.py", "models", "download", "internlm/tiny", "--source", "modelscope",
           "--endpoint", hub.url, "--dest", str(dest), "--data-dir", str(data)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    part = part_path(dest, BIG)
    wait_until(lambda: part.exists() and part.stat().st_size == HELD, "the held bytes",
               progress=lambda: part.exists() and part.stat().st_size)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate()
    assert proc.returncode == 130, out
    assert "Cancelled." in out and "run the same command again to resume" in out and "Traceback" not in out
    assert part.stat().st_size == HELD and not is_complete(dest)
    status = subprocess.run([sys.executable, "launch.py", "models", "status", "--data-dir", str(data)], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert "cancelled" in status.stdout and "internlm/tiny" in status.stdout


def test_bad_requests_are_refused_with_the_fix(tmp_path, hub):
    from studio.errors import InputError

    d = downloads(tmp_path, hub)
    for repo in ("../etc", "a/b/c", "", "no owner"):
        with pytest.raises(InputError, match="not a repository name"):
            d.start(DownloadRequest("huggingface", repo, dest=tmp_path / "m"))
    with pytest.raises(InputError, match="owner/name"):
        d.start(DownloadRequest("modelscope", "justname", dest=tmp_path / "m"))
    with pytest.raises(InputError, match="Unknown source"):
        d.start(DownloadRequest("openxlab", "a/b", dest=tmp_path / "m"))


def test_config_section_services_and_launch_flags(tmp_path, monkeypatch):
    from pydantic import ValidationError

    import launch
    from studio.config import load_config
    from studio.hub.download_settings import endpoint_for
    from studio.services import build_services

    with pytest.raises(ValidationError, match="http:// or https://"):
        DownloadsConfig(hf_endpoint="hf-mirror.com")
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.com/")
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "https://ms.example")
    cfg = DownloadsConfig()
    assert endpoint_for(cfg, "huggingface") == "https://hf-mirror.com"
    assert endpoint_for(cfg, "modelscope") == "https://ms.example"
    assert endpoint_for(DownloadsConfig(hf_endpoint="https://a.example/"), "huggingface") == "https://a.example"
    assert endpoint_for(cfg, "huggingface", "http://127.0.0.1:9") == "http://127.0.0.1:9"
    services = build_services(load_config(), tmp_path / "data")
    try:
        assert services.downloads.default_dest("internlm/x") == tmp_path / "data" / "models" / "internlm" / "x"
        assert (tmp_path / "data" / "downloads").stat().st_mode & 0o777 == 0o700
    finally:
        services.close()
    args = launch.parse_args(["--port", "6006", "--num-gpus", "1"])  # the studio's own flags are unchanged
    assert (args.port, args.num_gpus, args.cli) == (6006, 1, False)
    assert launch.main(["models", "download", "../x", "--data-dir", str(tmp_path / "d")]) == 2
    # The shared flags may come before `models`, as they do before the studio's own flags.
    assert launch.main(["--data-dir", str(tmp_path / "d"), "models", "download", "../x"]) == 2
    assert launch.main([f"--data-dir={tmp_path / 'e'}", "models", "status"]) == 0
    assert (tmp_path / "e").is_dir()
    assert launch._models_at(["--port", "6006", "models"]) is None  # not a models command: the studio's parser says so


def test_progress_line_and_hostile_listing_paths():
    from studio.hub.download import JobState
    from studio.hub.download_list import safe_path
    from studio.models_cli import progress_line

    req = DownloadRequest("huggingface", "internlm/tiny", dest=Path("/x"))
    st = JobState("j", req, "downloading", done_bytes=3 * 1024 * 1024, total_bytes=6 * 1024 * 1024, files_done=1,
                  files_total=4, current_file=BIG)
    assert progress_line(st, tty=True) == f" 50.0%  3.0 MiB / 6.0 MiB  file 2/4  internlm/tiny: downloading {BIG}"
    assert progress_line(st, tty=False) == f"internlm/tiny: downloading {BIG} (file 2/4)"  # one line per file
    assert progress_line(JobState("j", req, "listing"), tty=True) == "internlm/tiny: listing files…"
    assert all(safe_path(p) for p in ("a", "sub/dir/x.bin", ".gitattributes"))
    assert not any(safe_path(p) for p in ("../x", "/etc/passwd", "a/../../b", "a//b", "a\\b", "",
                                          ".puyu-download.json", ".puyu-partial/x.part", "a\0b", None))
