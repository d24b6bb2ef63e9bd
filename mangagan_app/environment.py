"""The versions and the compute device this copy of the app runs with (``mangagan doctor``, Help → About)."""

from __future__ import annotations

import platform
from importlib import metadata

from mangagan_app import __version__


def _package_version(*names: str) -> str:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def environment_report() -> list[tuple[str, str]]:
    """(name, version) rows shown by ``mangagan doctor`` and Help → About."""
    import PIL
    import torch

    from mangagan_app.ml.device import choose_device

    return [
        ("MangaGAN Studio", __version__),
        ("Python", platform.python_version()),
        ("torch", torch.__version__),
        ("Qt for Python", _package_version("PySide6-Essentials", "PySide6")),
        ("Pillow", PIL.__version__),
        ("animeface", _package_version("animeface")),
        ("device", choose_device().description),
    ]
