import subprocess
import sys

from mangagan_app import __version__


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mangagan_app", *args], capture_output=True, text=True, timeout=120)


def test_version_prints_the_package_version():
    result = _run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mangagan {__version__}"


def test_doctor_reports_versions_and_a_working_detector():
    result = _run("doctor")
    assert result.returncode == 0, result.stderr
    for name in ("Python", "torch", "Qt for Python", "Pillow", "animeface", "device", "detector"):
        assert name in result.stdout
    assert "detector         ok" in result.stdout
