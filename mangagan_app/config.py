"""Configuration dataclasses (JSON in, JSON out) and where the app's files live."""

from __future__ import annotations

import sys
from pathlib import Path


def _bundle_root() -> Path:
    """The folder holding ``resources/`` and ``weights/``.

    A PyInstaller build unpacks them beside the program (``sys._MEIPASS``); a
    source checkout or editable install has them at the repository root.
    """
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root)
    return Path(__file__).resolve().parent.parent


RESOURCES_DIR = _bundle_root() / "resources"
WEIGHTS_DIR = _bundle_root() / "weights"
APP_ICON = RESOURCES_DIR / "mangagan.png"
