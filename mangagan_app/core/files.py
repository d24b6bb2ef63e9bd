"""Atomic file writes (a crash leaves either the old file or the new one, never half) and
output folders that a failed job removes again."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = _read_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder + ``os.replace``.

    Raises ``OSError`` (disk full, read-only folder, ...) after removing the
    temporary file, so no half-written file is left behind.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; the finished file gets the permissions a plain open() would give.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextmanager
def new_folders(*folders: str | os.PathLike) -> Iterator[None]:
    """Create ``folders`` (with their missing parents) for the block that writes into them.

    If the block raises, every folder created here that is still empty is removed
    again (empty folders the block made inside them too), so a command that fails
    leaves nothing behind; files the block wrote are kept.
    """
    created: list[Path] = []
    for folder in folders:
        path = Path(os.path.abspath(folder))
        missing = []
        while not path.exists() and path != path.parent:
            missing.append(path)
            path = path.parent
        Path(folder).mkdir(parents=True, exist_ok=True)
        created += missing  # deepest first
    try:
        yield
    except BaseException:
        for folder in created:
            _remove_empty_tree(folder)
        raise


def _remove_empty_tree(folder: Path) -> None:
    if not folder.is_dir():
        return
    for root, _dirs, _files in os.walk(folder, topdown=False):
        try:
            os.rmdir(root)
        except OSError:  # not empty: something was written there
            pass
