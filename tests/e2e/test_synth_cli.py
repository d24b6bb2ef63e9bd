import json
import subprocess
import sys

from PIL import Image


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mangagan_app", *args], capture_output=True, text=True, timeout=120)


def test_synth_writes_faces_sidecars_and_metadata_when_run_from_the_command_line(tmp_path):
    result = _run("synth", str(tmp_path), "--count", "6", "--size", "32", "--seed", "7", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "img/s" in result.stdout
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [f"{i:06d}.png" for i in range(6)]
    records = [json.loads(line) for line in (tmp_path / "metadata.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == [f"{i:06d}.png" for i in range(6)]
    assert (tmp_path / "000003.txt").read_text().startswith("1girl, ")


def test_synth_sheet_writes_a_grid_when_asked_for_16_faces(tmp_path):
    out = tmp_path / "sheet.png"
    result = _run("synth-sheet", str(out), "--count", "16", "--columns", "4", "--size", "32", "--colours", "64")
    assert result.returncode == 0, result.stderr
    with Image.open(out) as sheet:
        assert sheet.size == (128, 128)
        assert sheet.mode == "P"


def test_synth_rejects_a_bad_count_with_a_clear_message(tmp_path):
    result = _run("synth", str(tmp_path), "--count", "0")
    assert result.returncode != 0
    assert result.returncode == 2 and "argument --count: must be a positive whole number, not 0" in result.stderr
    assert not any(tmp_path.iterdir())
