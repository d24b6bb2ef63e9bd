import os
import stat

import pytest

from mangagan_app.core.files import atomic_write_bytes, atomic_write_json


def test_atomic_write_replaces_file_and_leaves_no_temporary_when_done(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": 2})
    assert target.read_text().strip().endswith("}") and '"x": 2' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_write_gives_ordinary_permissions_when_created(tmp_path):
    target = atomic_write_bytes(tmp_path / "b.bin", b"data")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_atomic_write_keeps_old_file_when_folder_is_read_only(tmp_path):
    target = tmp_path / "c.txt"
    target.write_text("old")
    tmp_path.chmod(0o500)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("running as a user who can write to read-only folders (root)")
        with pytest.raises(OSError):
            atomic_write_bytes(target, b"new")
        assert target.read_text() == "old"
    finally:
        tmp_path.chmod(0o700)
