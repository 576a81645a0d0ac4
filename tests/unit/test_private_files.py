"""The studio's private folders for files shown to users: 0700, made exclusively, never through a link."""

from __future__ import annotations

import os
import stat
import time

import pytest

from studio.errors import StudioError
from studio.store.private_files import PrivateFiles, private_dir


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "data").mkdir()
    return PrivateFiles(tmp_path / "data")


def test_every_folder_and_file_is_private(files):
    path = files.export("chat.md", b"# hi")
    assert path.read_bytes() == b"# hi" and mode(path) == 0o600
    data = files.data_dir
    for folder in (data / "tmp", data / "tmp" / "files", files.root / "exports", path.parent):
        assert mode(folder) == 0o700, folder
    thumb = files.cached("thumbs", "abc.png", lambda: b"png")
    assert thumb == files.root / "thumbs" / "abc.png" and mode(thumb) == 0o600 and mode(thumb.parent) == 0o700


def test_exports_of_the_same_name_never_clash_and_old_ones_are_swept(files):
    first, second = files.export("a.md", b"1"), files.export("a.md", b"2")
    assert first != second and first.read_bytes() == b"1" and second.read_bytes() == b"2"
    old = time.time() - 2 * 3600
    os.utime(first.parent, (old, old))
    files.export("b.md", b"3")
    assert not first.parent.exists() and second.exists()


def test_thumbnail_is_written_once_then_reused(files):
    calls = []
    make = lambda: calls.append(1) or b"png"  # noqa: E731
    assert files.cached("thumbs", "d.png", make) == files.cached("thumbs", "d.png", make)
    assert calls == [1]


def test_symlinked_thumbs_folder_is_refused_not_followed(files, tmp_path):
    attacker = tmp_path / "attacker"
    attacker.mkdir()
    os.chmod(attacker, 0o777)
    files.folder("exports")  # tmp/files exists
    os.symlink(attacker, files.root / "thumbs")
    with pytest.raises(StudioError) as info:
        files.cached("thumbs", "d.png", lambda: b"png")
    assert info.value.message.startswith(f"Refusing to use {files.root / 'thumbs'}: it is a symbolic link")
    assert "Remove or rename" in info.value.hint
    assert list(attacker.iterdir()) == [] and mode(attacker) == 0o777  # nothing written, not chmod-ed


def test_symlinked_tmp_folder_is_refused(files, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.symlink(target, files.data_dir / "tmp")
    with pytest.raises(StudioError, match="it is a symbolic link"):
        files.export("a.md", b"x")
    assert list(target.iterdir()) == []


def test_planted_link_in_place_of_a_thumbnail_is_refused(files, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    os.symlink(secret, files.folder("thumbs") / "d.png")
    with pytest.raises(StudioError, match="it is not a plain file of this user"):
        files.cached("thumbs", "d.png", lambda: b"png")
    assert secret.read_text() == "not yours"


def test_world_writable_folder_is_refused(files):
    folder = files.data_dir / "tmp"
    folder.mkdir()
    os.chmod(folder, 0o777)
    with pytest.raises(StudioError, match=r"other users may write to it \(mode 777\)"):
        files.folder("thumbs")


def test_folder_of_another_user_is_refused(files):
    if os.geteuid() != 0:
        pytest.skip("making a folder owned by another user needs root")
    folder = files.data_dir / "tmp"
    folder.mkdir(mode=0o700)
    os.chown(folder, 12345, 12345)
    with pytest.raises(StudioError, match="it belongs to user id 12345, not to this user"):
        files.folder("thumbs")


def test_a_file_where_the_folder_goes_is_refused(files):
    (files.data_dir / "tmp").write_text("x")
    with pytest.raises(StudioError, match="it is not a folder"):
        files.folder("thumbs")


def test_our_own_readable_folder_is_tightened(files):
    folder = files.data_dir / "tmp"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    assert private_dir(files.data_dir, "tmp") == folder and mode(folder) == 0o700


def test_export_on_a_full_disk_names_folder_cause_and_fix(tmp_path):
    from tests.support.tmpfs import fill, remount, tiny_tmpfs

    with tiny_tmpfs(tmp_path / "disk") as disk:
        files = PrivateFiles(disk)
        files.export("small.md", b"ok")
        filler = fill(disk)
        with pytest.raises(StudioError) as info:
            files.export("chat.md", b"x" * 200_000)
        assert "Could not write chat.md: the disk holding" in info.value.message
        assert "is full" in info.value.message and "Free some space" in info.value.hint
        exports = files.root / "exports"
        assert sorted(p.name for p in exports.rglob("*.md")) == ["small.md"]  # no half-written file left
        filler.unlink()
        remount(disk, "ro")
        with pytest.raises(StudioError) as info:
            files.export("chat.md", b"x")
        assert f"{exports} is on a read-only file system" in info.value.message
        assert "Remount it read-write" in info.value.hint


@pytest.mark.parametrize("name", ["../escape.md", "a/b.md", "..", ""])
def test_names_that_would_leave_the_folder_are_refused(files, name):
    with pytest.raises(StudioError, match="not a plain file name"):
        files.export(name, b"x")
    assert not (files.data_dir / "tmp" / "files" / "escape.md").exists()
