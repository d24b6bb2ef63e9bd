"""Folder fields that show a whole path: wide enough for one, "~" for the home folder,
the full path in the tooltip. Every field shown this way is read back with ``expanduser``."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QLineEdit

PATH_CHARACTERS = 64  # a folder field is wide enough for a path of this many characters


def shown_path(path: str | Path) -> str:
    """``path`` as a folder field shows it: the home folder as "~"."""
    text, home = str(path), str(Path.home())
    if home in ("", "/") or not (text == home or text.startswith(home + "/")):
        return text
    return "~" + text[len(home) :]


def read_path(edit: QLineEdit) -> Path | None:
    """The folder a field names, "~" expanded; None when it is empty."""
    text = edit.text().strip()
    return Path(text).expanduser() if text else None


def fit_for_paths(edit: QLineEdit, characters: int = PATH_CHARACTERS) -> QLineEdit:
    """``edit`` made wide enough for a path of ``characters``, with the full path in its
    tooltip as it changes (a longer one shows its end: the folder's own name)."""
    # "n" is as wide as a path's letters on average (averageCharWidth is narrower: it counts "i" and "l").
    edit.setMinimumWidth(edit.fontMetrics().horizontalAdvance("n" * characters) + 16)
    tip = edit.toolTip()

    def show_whole(_text: str) -> None:
        whole = read_path(edit)
        edit.setToolTip("\n".join(t for t in (str(whole) if whole else "", tip) if t))

    edit.textChanged.connect(show_whole)
    show_whole(edit.text())
    return edit
