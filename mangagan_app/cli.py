"""``mangagan``: the app's capabilities without a window (scripts, servers, CI).

Each subcommand is a ``_cmd_<name>(args) -> exit code`` registered in
:func:`build_parser`; heavy imports happen inside the command so that
``mangagan --version`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
from importlib import metadata

from mangagan_app import __version__

log = logging.getLogger(__name__)


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


def _cmd_doctor(args: argparse.Namespace) -> int:
    from mangagan_app.core.cropping import detector_self_check

    for name, value in environment_report():
        print(f"{name:<16} {value}")
    check = detector_self_check()
    print(f"{'detector':<16} {'ok' if check.ok else 'FAILED'}: {check.message}")
    if not check.ok:
        print("doctor: the face detector does not work; cropping cannot run.", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mangagan", description="MangaGAN Studio on the command line.")
    parser.add_argument("--version", action="version", version=f"mangagan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    doctor = sub.add_parser("doctor", help="check versions, compute device and the face detector")
    doctor.set_defaults(func=_cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
