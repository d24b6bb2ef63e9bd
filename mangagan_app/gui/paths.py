"""Where the app keeps the user's things (a module of its own so no tab imports ``gui/app.py``)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QStandardPaths


def app_data_dir() -> Path:
    """The user's data folder for the app (runs, exported models, favourites, the log), created if needed."""
    folder = Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_file_path() -> Path:
    return app_data_dir() / "mangagan-studio.log"
