"""A run's resume state on disk: ``checkpoint.pt`` and the ``checkpoint.prev.pt`` before it.

A checkpoint is a ``torch.save`` of plain tensors and dicts (state dicts, counters,
the config), read with ``weights_only=True``. Kept apart from the trainer so that
exporting and inspecting runs does not import the training loop.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import torch

from mangagan_app.core.files import atomic_write_bytes

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked (checkpoint present/missing/incompatible)."""


def save_checkpoint(run_dir: Path, state: dict, *, keep_current: bool = True) -> Path:
    """Write the resume state atomically, keeping the previous one as a fallback.

    ``keep_current`` False overwrites ``checkpoint.pt`` without moving it to
    ``checkpoint.prev.pt`` (it is known to be unreadable; the fallback stays).
    """
    buf = io.BytesIO()
    torch.save(state, buf)
    path = run_dir / CHECKPOINT
    if path.exists() and keep_current:
        os.replace(path, run_dir / PREVIOUS_CHECKPOINT)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_resume_state(run_dir: str | Path) -> dict:
    """The newest readable resume state of ``run_dir`` (falls back to the previous one).

    Raises ``RunFolderError`` naming each file and why it could not be read.
    """
    return load_newest(run_dir)[0]


def load_newest(run_dir: str | Path) -> tuple[dict, Path]:
    """(state, the file it came from); see :func:`load_resume_state`."""
    run_dir = Path(run_dir)
    reasons = []
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = run_dir / name
        if not path.exists():
            reasons.append(f"{path}: missing")
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or "G_ema" not in state or "step" not in state:
                raise ValueError("not a MangaGAN checkpoint")
            if reasons:
                log.warning("using the previous checkpoint %s (%s)", path, "; ".join(reasons))
            return state, path
        except Exception as exc:  # noqa: BLE001 — any unreadable file falls back to the previous one
            reasons.append(f"{path}: {type(exc).__name__}: {exc}")
    raise RunFolderError("no usable checkpoint: " + "; ".join(reasons))
