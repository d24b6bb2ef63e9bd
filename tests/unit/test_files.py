import os
import stat

import pytest

from mangagan_app.core.files import atomic_write_bytes, atomic_write_json, new_folders


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


def test_new_folders_removes_the_empty_folders_it_made_when_the_block_fails(tmp_path):
    (tmp_path / "kept").mkdir()
    with pytest.raises(ValueError), new_folders(tmp_path / "a" / "b", tmp_path / "kept" / "c"):
        assert (tmp_path / "a" / "b").is_dir() and (tmp_path / "kept" / "c").is_dir()
        (tmp_path / "a" / "b" / "previews").mkdir()
        raise ValueError("the job failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())


def test_new_folders_keeps_the_folders_and_what_was_written_when_the_block_succeeds_or_wrote(tmp_path):
    with new_folders(tmp_path / "ok"):
        pass
    with pytest.raises(OSError), new_folders(tmp_path / "half"):
        (tmp_path / "half" / "config.json").write_text("{}")
        raise OSError("disk full")
    assert (tmp_path / "ok").is_dir() and (tmp_path / "half" / "config.json").is_file()
