"""The model finder over tiny official-layout checkpoints placed as the Hugging Face cache, the ModelScope
cache and the lesson's new_models folders hold them: family, size, missing files, partial downloads, an
unknown architecture, a symlink loop, and the memory plan's verdict."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest

from studio.tasks.models_find import MARKER, PARTIAL_DIR, Target, find_checkpoints, print_listing, search_folders
from tests.support.tiny_checkpoints import write_tiny_internlm2
from tests.support.tiny_internvl2 import write_tiny_internvl2
from tests.support.tiny_xcomposer2 import write_tiny_xcomposer2


def mark_downloaded(folder: Path, state: str = "complete") -> None:
    """The record studio.hub.download leaves in a folder it fetched (every file verified, for "complete")."""
    files = {p.name: {"size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in folder.iterdir()
             if p.is_file() and p.name != MARKER}
    (folder / MARKER).write_text(json.dumps({"state": state, "files": files if state == "complete" else {}}))


PLENTY = Target(device="cpu", dtype="bfloat16", free=1 << 50)


def as_hf_cache(src: Path, hub: Path, repo: str, rev: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """`src` laid out as huggingface_hub caches it: blobs named by hash, snapshots/<rev>/ of links to them."""
    top = hub / ("models--" + repo.replace("/", "--"))
    snap = top / "snapshots" / rev
    snap.mkdir(parents=True)
    (top / "blobs").mkdir()
    (top / "refs").mkdir()
    (top / "refs" / "main").write_text(rev)
    for f in sorted(src.iterdir()):
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, top / "blobs" / digest)
        (snap / f.name).symlink_to(Path("../../blobs") / digest)
    return snap


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict:
    """Every layout and damage at once, built once: the finder is asked about the whole tree."""
    tmp = tmp_path_factory.mktemp("find")
    lm = write_tiny_internlm2(tmp / "src-lm", vocab_size=1024)
    hf = tmp / "hf-hub"
    as_hf_cache(lm, hf, "internlm/internlm2-chat-1_8b")
    ms = tmp / "modelscope-hub"
    write_tiny_internvl2(ms / "OpenGVLab" / "InternVL2-2B", vocab_size=1024)
    shutil.copytree(lm, ms / "models" / "Shanghai_AI_Laboratory" / "internlm2-chat-1_8b")
    share = tmp / "share" / "new_models"
    write_tiny_xcomposer2(share / "Shanghai_AI_Laboratory" / "internlm-xcomposer2-vl-1_8b", vocab_size=1024)
    shard_gone = shutil.copytree(lm, share / "Shanghai_AI_Laboratory" / "internlm2-chat-7b")
    (shard_gone / "model-00002-of-00002.safetensors").unlink()
    (shard_gone / "tokenizer.model").unlink()
    odd = share / "someone" / "foo-7b"
    shutil.copytree(lm, odd)
    (odd / "config.json").write_text(json.dumps({"architectures": ["FooForCausalLM"], "model_type": "foo"}))
    (share / "loop").mkdir()
    (share / "loop" / "back").symlink_to(share)  # a loop: walking it must end
    data = tmp / "data" / "models"
    partial = shutil.copytree(lm, data / "internlm" / "internlm2_5-7b-chat")
    mark_downloaded(partial, "partial")
    (partial / PARTIAL_DIR).mkdir()
    (partial / PARTIAL_DIR / "model-00002-of-00002.safetensors.part").write_bytes(b"\0" * 100)
    done = shutil.copytree(lm, data / "internlm" / "internlm2-chat-1_8b")
    mark_downloaded(done)
    forged = shutil.copytree(lm, data / "internlm" / "internlm2-chat-20b")  # marked complete, then a file changed
    mark_downloaded(forged)
    (forged / "generation_config.json").write_text("{}")
    (data / "gguf").mkdir()
    (data / "gguf" / "tiny.Q4_0.gguf").write_bytes(b"GGUF" + b"\0" * 1000)
    folders = [hf, ms, share, data, tmp / "absent"]
    return {"folders": folders, "found": {f"{f.name}{'@hf' if 'snapshots' in str(f.path) else ''}": f
                                         for f in find_checkpoints(folders, PLENTY)}, "lm": lm}


def test_each_layout_is_found_with_its_family_and_name(tree):
    found = tree["found"]
    hf = found["internlm/internlm2-chat-1_8b@hf"]
    assert hf.family == "internlm2"  # through the cache's links
    assert found["OpenGVLab/InternVL2-2B"].family == "internvl2"
    assert found["Shanghai_AI_Laboratory/internlm2-chat-1_8b"].family == "internlm2"  # ModelScope's hub/models/
    assert found["Shanghai_AI_Laboratory/internlm-xcomposer2-vl-1_8b"].family == "xcomposer2"
    assert found["gguf/tiny.Q4_0.gguf"].gguf and found["gguf/tiny.Q4_0.gguf"].family == "hf_chat_template"
    assert hf.loadable and hf.state == "complete" and hf.missing == ()
    assert hf.files == ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    on_disk = sum(p.stat().st_size for p in tree["lm"].iterdir())
    assert hf.size == on_disk  # the blobs' bytes, read through the links


def test_a_missing_shard_and_tokenizer_are_named_and_not_offered(tree):
    f = tree["found"]["Shanghai_AI_Laboratory/internlm2-chat-7b"]
    assert "model-00002-of-00002.safetensors" in f.missing
    assert any(m.startswith("tokenizer") for m in f.missing)
    assert f.state == "incomplete" and not f.loadable


def test_a_partial_download_is_listed_but_never_offered(tree):
    f = tree["found"]["internlm/internlm2_5-7b-chat"]
    assert f.state == "partial" and not f.loadable
    done = tree["found"]["internlm/internlm2-chat-1_8b"]
    assert done.state == "complete" and done.loadable
    assert tree["found"]["internlm/internlm2-chat-20b"].state == "partial"  # its verified files no longer match


def test_an_unknown_architecture_says_why(tree):
    f = tree["found"]["someone/foo-7b"]
    assert f.family.startswith("unknown (") and "FooForCausalLM" in f.family and not f.loadable
    assert f.arch == "FooForCausalLM / foo"


def test_the_loop_is_walked_once(tree):
    names = [f.name for f in find_checkpoints(tree["folders"][2:3], PLENTY)]
    assert len(names) == len(set(names)) == 3  # xcomposer2, the shard-less copy, the unknown one


def test_memory_plan_says_whether_it_fits(tree):
    assert tree["found"]["OpenGVLab/InternVL2-2B"].fits is True
    small = find_checkpoints(tree["folders"][1:2], Target(device="cpu", dtype="bfloat16", free=1024))
    assert small[0].fits is False and "GiB free on cpu" in small[0].plan and small[0].need > 1024


def test_a_truncated_shard_is_caught_from_its_header(tmp_path, tree):
    folder = shutil.copytree(tree["lm"], tmp_path / "org" / "cut")
    shard = folder / "model-00001-of-00002.safetensors"
    with open(shard, "r+b") as fh:
        fh.truncate(shard.stat().st_size // 2)
    (f,) = find_checkpoints([tmp_path], PLENTY)
    assert "model-00001-of-00002.safetensors (truncated)" in f.missing and not f.loadable


def test_search_folders_default_and_configured(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    defaults = search_folders(None, tmp_path / "data")
    assert defaults[0] == tmp_path / "hfhome" / "hub" and defaults[-1] == tmp_path / "data" / "models"
    assert Path("/root/share/new_models") in defaults and Path("/share/new_models") in defaults
    monkeypatch.setenv("MY_MODELS", str(tmp_path))
    assert search_folders(["$MY_MODELS/a", "$MY_MODELS/a"], None) == [tmp_path / "a"]


def test_listing_names_the_folders_and_what_is_missing(tree):
    out = io.StringIO()
    print_listing(sorted(tree["found"].values(), key=lambda f: f.name), tree["folders"], out)
    text = out.getvalue()
    assert f"{tree['folders'][-1]} (absent)" in text
    assert "[internvl2]" in text and "missing: model-00002-of-00002.safetensors" in text and "partial" in text


def test_models_list_in_the_terminal(tree, tmp_path):
    from studio.models_cli import run_models

    out, err = io.StringIO(), io.StringIO()
    code = run_models(["list", "--dir", str(tree["folders"][1]), "--data-dir", str(tmp_path / "data")], tmp_path, out, err)
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert "OpenGVLab/InternVL2-2B  [internvl2]" in text and "complete  fits" in text
    assert str(tree["folders"][1] / "OpenGVLab" / "InternVL2-2B") in text


def test_the_studio_starts_in_a_new_data_dir_with_its_cache_elsewhere(tmp_path):
    from studio.config import load_config
    from studio.services import build_services

    services = build_services(load_config(), tmp_path / "new" / "data", cache_dir=tmp_path / "cache")
    try:
        assert services.downloads.jobs() == [] and (tmp_path / "new" / "data" / "downloads").is_dir()
    finally:
        services.close()
