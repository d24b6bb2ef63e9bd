"""``build_installer.py`` end to end: PyInstaller build, the built program's self-test, archive.

Takes 2-7 minutes on two cores, so it is marked slow; it is skipped when PyInstaller
(the ``build`` extra) is not installed.
"""

import hashlib
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("PyInstaller", reason="the build extra is not installed: pip install -e '.[build]'")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks the Linux archive and menu entry")
def test_build_self_tests_and_archives_the_app_when_weights_are_given(tmp_path, tiny_weights):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "build_installer.py"),
            "--weights-dir",
            str(tiny_weights.parent),
            "--dist",
            str(tmp_path / "dist"),
            "--work",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "frozen build in" in result.stdout and "self-test passed" in result.stdout
    face = Image.open(tmp_path / "work" / "self-test" / "face.png")
    assert len(set(face.convert("RGB").getdata())) > 1

    app = tmp_path / "dist" / "MangaGANStudio"
    shipped = app / "_internal" / "weights" / tiny_weights.name
    assert hashlib.sha256(shipped.read_bytes()).digest() == hashlib.sha256(tiny_weights.read_bytes()).digest()
    assert (app / "_internal" / "resources" / "mangagan.png").is_file()
    assert "Exec=MangaGANStudio" in (app / "mangagan-studio.desktop").read_text()
    # Left out: torch's C++ tests, Qt translations, the other Qt bindings.
    assert not (app / "_internal" / "torch" / "test").exists()
    assert not (app / "_internal" / "PySide6" / "Qt" / "translations").exists()

    archives = list((tmp_path / "dist").glob("MangaGANStudio-*-linux-*.tar.gz"))
    assert len(archives) == 1
    with tarfile.open(archives[0]) as tar:
        program = tar.getmember("MangaGANStudio/MangaGANStudio")
        card = tar.getmember(f"MangaGANStudio/_internal/weights/{tiny_weights.stem}.json")
    assert program.mode & stat.S_IXOTH
    assert card.mode & stat.S_IROTH  # the card was written 0600; everyone who unpacks must read it
