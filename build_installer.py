"""Build the desktop app an artist can run without Python: ``python build_installer.py``.

Makes a PyInstaller one-folder build ``dist/MangaGANStudio/`` (the program, Qt,
torch, the default weights and ``resources/``), runs the built program's
``--self-test`` and, only when that passes, packs the folder into
``dist/MangaGANStudio-<version>-<platform>-<machine>.tar.gz`` (Linux) or ``.zip``
(Windows, macOS). On Linux the folder also gets ``mangagan-studio.desktop`` and
``install-desktop-entry.sh``, which adds the app to the user's applications menu.

Needs the ``build`` extra: ``.venv/bin/pip install -e '.[build]'``. Exits 1 with a
message when PyInstaller is missing, the weights folder holds no model, PyInstaller
fails or the self-test fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
NAME = "MangaGANStudio"
SPEC = ROOT / "packaging" / "mangagan_studio.spec"
SELF_TEST_TIMEOUT_S = 900

DESKTOP_ENTRY = """\
[Desktop Entry]
Type=Application
Name=MangaGAN Studio
GenericName=Anime character designer
Comment=Design anime faces with a conditional GAN, offline
Exec=MangaGANStudio
Icon=mangagan-studio
Terminal=false
Categories=Graphics;2DGraphics;
StartupWMClass=MangaGAN Studio
"""

# Writes the entry with absolute paths into the user's menu: a .desktop file's Exec
# and Icon must be absolute (or on PATH / in an icon theme), and only the user knows
# where the folder was unpacked.
INSTALL_DESKTOP_ENTRY = """\
#!/bin/sh
# Adds MangaGAN Studio to your applications menu. Run it again after moving this folder.
set -e
here=$(cd "$(dirname "$0")" && pwd)
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
mkdir -p "$apps"
sed -e "s|^Exec=.*|Exec=\\"$here/MangaGANStudio\\"|" \\
    -e "s|^Icon=.*|Icon=$here/_internal/resources/mangagan.png|" \\
    "$here/mangagan-studio.desktop" > "$apps/mangagan-studio.desktop.tmp"
mv "$apps/mangagan-studio.desktop.tmp" "$apps/mangagan-studio.desktop"
echo "MangaGAN Studio is now in your applications menu ($apps/mangagan-studio.desktop)"
"""


class BuildError(RuntimeError):
    """The build cannot go on; the message says why and what to do."""


def app_version() -> str:
    """``mangagan_app.__version__``, read as text from ``mangagan_app/__init__.py``."""
    for line in (ROOT / "mangagan_app" / "__init__.py").read_text(encoding="utf-8").splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise BuildError("mangagan_app/__init__.py has no __version__")


def archive_name(version: str) -> str:
    """``MangaGANStudio-<version>-<platform>-<machine>`` plus ``.tar.gz`` on Linux, ``.zip`` elsewhere."""
    system = {"linux": "linux", "win32": "windows", "darwin": "macos"}.get(sys.platform, sys.platform)
    suffix = ".tar.gz" if system == "linux" else ".zip"
    return f"{NAME}-{version}-{system}-{platform.machine().lower()}{suffix}"


def folder_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symbolic links not followed)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def run_pyinstaller(dist: Path, work: Path, weights_dir: Path, naive: bool) -> None:
    if importlib.util.find_spec("PyInstaller") is None:
        raise BuildError("PyInstaller is not installed: run  .venv/bin/pip install -e '.[build]'")
    command = [
        sys.executable,
        "-m",
        "PyInstaller",
        str(SPEC),
        "--noconfirm",
        "--log-level",
        "WARN",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
        "--",
        "--weights-dir",
        str(weights_dir),
    ]
    if naive:
        command.append("--naive")
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        raise BuildError("PyInstaller failed (its messages are above)")


# Libraries shipped with full symbol tables, which only name functions in C++ stack
# traces: stripping them saves ~110 MB (libtorch_cpu alone ~90 MB). Everything else is
# left alone: the auditwheel-patched copies in numpy.libs/pillow.libs/animeface.libs
# fail to load once stripped ("ELF load command address/offset not page-aligned").
STRIPPED = ("_internal/torch/lib/*.so*", "_internal/libpython*.so*")


def strip_symbols(app_dir: Path) -> int:
    """Strip the STRIPPED libraries of ``app_dir`` (Linux, when ``strip`` exists); return the bytes saved."""
    strip = shutil.which("strip")
    if strip is None or not sys.platform.startswith("linux"):
        return 0
    files = sorted({p for pattern in STRIPPED for p in app_dir.glob(pattern) if p.is_file() and not p.is_symlink()})
    before = sum(p.stat().st_size for p in files)
    if files and subprocess.run([strip, "--strip-unneeded", *map(str, files)]).returncode != 0:
        raise BuildError("strip failed on the torch libraries (its message is above)")
    return before - sum(p.stat().st_size for p in files)


def add_desktop_entry(app_dir: Path) -> None:
    """The Linux menu entry and the script that installs it (see INSTALL_DESKTOP_ENTRY)."""
    (app_dir / "mangagan-studio.desktop").write_text(DESKTOP_ENTRY, encoding="utf-8")
    script = app_dir / "install-desktop-entry.sh"
    script.write_text(INSTALL_DESKTOP_ENTRY, encoding="utf-8")
    script.chmod(0o755)


def run_self_test(app_dir: Path, output: Path) -> None:
    """Run the built program's ``--self-test``; raise :class:`BuildError` unless it exits 0."""
    program = app_dir / (NAME + (".exe" if sys.platform == "win32" else ""))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QT_"))}
    try:
        result = subprocess.run(
            [str(program), "--self-test", "--output", str(output)],
            env=env,
            capture_output=True,
            text=True,
            timeout=SELF_TEST_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise BuildError(f"the self-test of {program} did not finish in {SELF_TEST_TIMEOUT_S} s") from None
    print(result.stdout, end="")
    if result.returncode != 0:
        print(result.stderr[-4000:], end="", file=sys.stderr)
        raise BuildError(f"the self-test of the built program failed (exit status {result.returncode})")


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Files written atomically are 0600; whoever unpacks the archive must be able to read them.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if not info.issym():
        info.mode = 0o755 if info.isdir() or info.mode & 0o100 else 0o644
    return info


def write_archive(app_dir: Path, archive: Path) -> None:
    """Pack ``app_dir`` (as its own top folder) into ``archive`` via a temporary file."""
    partial = archive.with_name(archive.name + ".part")
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
            tar.add(app_dir, arcname=app_dir.name, filter=_normalised)
    else:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for path in sorted(app_dir.rglob("*")):
                zf.write(path, Path(app_dir.name) / path.relative_to(app_dir))
    os.replace(partial, archive)


def build(dist: Path, work: Path, weights_dir: Path, *, naive: bool = False) -> Path:
    """Build, self-test and archive; return the archive path. Raises :class:`BuildError`."""
    if not sorted(weights_dir.glob("*.safetensors")):
        raise BuildError(
            f"no model to ship: {weights_dir} holds no .safetensors file "
            "(export one with `mangagan export RUN weights/NAME`, or pass --weights-dir)"
        )
    start = time.perf_counter()
    run_pyinstaller(dist, work, weights_dir, naive)
    app_dir = dist / NAME
    if not naive:
        print(f"stripped symbol tables: {strip_symbols(app_dir) / 1e6:.0f} MB saved")
    if sys.platform.startswith("linux"):
        add_desktop_entry(app_dir)
    built = time.perf_counter() - start
    print(f"built {app_dir} in {built:.0f} s: {folder_size(app_dir) / 1e6:.0f} MB")

    run_self_test(app_dir, work / "self-test" / "face.png")

    archive = dist / archive_name(app_version())
    packed = time.perf_counter()
    write_archive(app_dir, archive)
    print(
        f"wrote {archive}: {archive.stat().st_size / 1e6:.0f} MB "
        f"(packed in {time.perf_counter() - packed:.0f} s; {time.perf_counter() - start:.0f} s in all)"
    )
    return archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights-dir",
        type=Path,
        default=ROOT / "weights",
        help="model folder to ship as weights/ (default: weights/)",
    )
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument(
        "--work",
        type=Path,
        default=ROOT / "build",
        help="PyInstaller's work folder, reused by the next build (default: build/)",
    )
    parser.add_argument(
        "--naive",
        action="store_true",
        help="no exclusions: everything PyInstaller's hooks collect (to measure what they save)",
    )
    args = parser.parse_args(argv)
    try:
        build(args.dist.resolve(), args.work.resolve(), args.weights_dir.resolve(), naive=args.naive)
    except BuildError as exc:
        print(f"build_installer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
