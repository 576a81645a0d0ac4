"""A studio whose data dir is on a disk that really fills up, then turns read-only (a tiny tmpfs): every
failure says the folder, the cause and the fix, and what can still be served is."""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client.exceptions import AppError

from tests.e2e.helpers import chat, connect, reply_text
from tests.support.apps import running_app, write_config
from tests.support.tmpfs import fill, remount, tiny_tmpfs


def test_full_then_read_only_data_dir_says_what_happened_and_keeps_serving(tmp_path):
    with tiny_tmpfs(tmp_path / "disk", size_kib=4096) as disk, \
            running_app(write_config(tmp_path), disk / "data") as app:
        client, user = connect(app.url)
        chat(client, "remember me")
        filler = fill(disk)
        with pytest.raises(AppError) as info:
            client.predict(api_name="/export_markdown")
        assert "Could not write" in str(info.value) and "the disk holding" in str(info.value)
        assert "is full" in str(info.value) and "Free some space on that disk" in str(info.value)
        assert "verbose error reporting" not in str(info.value)
        with pytest.raises(AppError, match=r"Could not rename the conversation: the disk holding .* is full"):
            client.predict("a new title " * 2000, api_name="/rename")
        filler.unlink()  # space is back: it works again, nothing lost
        assert "remember me" in Path(client.predict(api_name="/export_markdown")).read_text(encoding="utf-8")
        remount(disk, "ro")
        try:
            again, same = connect(app.url, user)  # listing and loading still work on a read-only disk
            assert same == user and reply_text(again.predict(user, api_name="/resume")[2]) == "echo: remember me"
            with pytest.raises(AppError, match=r"exports is on a read-only file system.*Remount it read-write"):
                again.predict(api_name="/export_json")
            with pytest.raises(AppError, match=r"Could not rename the conversation: .* read-only file system"):
                again.predict("renamed", api_name="/rename")
        finally:
            remount(disk, "rw")
