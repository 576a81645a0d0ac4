"""The Models tab's rendering: every error the downloader can end with is worded in Chinese with the values
it gives, a job read back without its values keeps its English, and table cells cannot break the table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from studio.hub import download_errors as errors
from studio.hub.download import DownloadRequest, JobState
from studio.ui.models_view import cell, job_message, jobs_table, progress_html

CJK = re.compile(r"[\u3400-\u9fff]")
REQ = DownloadRequest("huggingface", "internlm/internlm2_5-7b-chat", dest=Path("/models/internlm/x"))
ENDINGS = [
    errors.no_network("huggingface.co", "huggingface", "Name or service not known"),
    errors.not_found("modelscope", "internlm/x", "master"),
    errors.private_repo("huggingface", "internlm/x", 401),
    errors.dropped("huggingface.co", "model-00001-of-00002.safetensors", 5, "connection reset"),
    errors.disk_full("/models", 10 << 30, 1 << 30),
    errors.hash_mismatch("model.safetensors", "sha256"),
    errors.bad_listing("huggingface", "internlm/x", "not JSON"),
    errors.cannot_write("/models/x", "Permission denied"),
    errors.DownloadError("hub said 500", "", "dl_hub_error", {"repo": "internlm/x"}),
]


def failed(exc: errors.DownloadError, values: bool = True) -> JobState:
    return JobState("j1", REQ, "failed", error=exc.message, hint=exc.hint, error_key=exc.key,
                    error_values=dict(exc.values) if values else {})


@pytest.mark.parametrize("exc", ENDINGS, ids=lambda e: e.key)
def test_each_download_error_is_worded_in_chinese_with_its_values(exc):
    zh = job_message(failed(exc), "zh")
    assert CJK.search(zh) and "{" not in zh and exc.message not in zh
    for value in exc.values.values():
        assert str(value) in zh  # the repo, file, host or sizes it named
    assert job_message(failed(exc), "en") == f"{exc.message} {exc.hint}".strip()


def test_a_job_read_back_without_its_values_keeps_its_english():
    exc = errors.not_found("huggingface", "internlm/x", "main")
    assert job_message(failed(exc, values=False), "zh") == f"{exc.message} {exc.hint}"
    newer = errors.DownloadError("Something new.", "Do this.", "dl_something_new", {})
    assert job_message(failed(newer), "zh") == "Something new. Do this."  # a key the tab does not know yet


def test_cells_and_progress_escape_what_the_user_typed():
    assert cell("a|b<script>\nc") == "a&#124;b&lt;script&gt; c"
    job = JobState("j2", DownloadRequest("huggingface", "x/<b>y</b>", dest=Path("/m")), "downloading",
                   done_bytes=512, total_bytes=2048, files_done=1, files_total=3, current_file="w<i>.bin")
    html = progress_html(job, "en")
    assert "<b>" not in html and "<i>" not in html and 'value="512" max="2048"' in html
    assert "now w&lt;i&gt;.bin" in html
    table = jobs_table([job], "zh")
    assert "下载中" in table and "x/&lt;b&gt;y&lt;/b&gt;" in table
