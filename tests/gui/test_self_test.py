"""``mangagan-studio --self-test`` from source: the steps the desktop build runs after it is built."""

import hashlib

from PIL import Image

from mangagan_app.gui.self_test import run_self_test


def _run(qtbot, *args: str) -> tuple[int, list[str]]:
    lines: list[str] = []
    status = run_self_test(["--self-test", *args], out=lines.append)
    return status, lines


def test_self_test_passes_and_writes_face_and_window_when_weights_are_good(qtbot, tmp_path, tiny_weights):
    before = hashlib.sha256(tiny_weights.read_bytes()).hexdigest()
    status, lines = _run(qtbot, "--weights", str(tiny_weights), "--output", str(tmp_path / "out" / "face.png"))

    assert status == 0, lines
    assert lines[-1] == "self-test passed"
    assert any(line.startswith("detector (animeface in a spawned process): found the reference face") for line in lines)
    face = Image.open(tmp_path / "out" / "face.png")
    assert face.size == (256, 256)  # the 32 px face enlarged 8x
    assert len(set(face.convert("RGB").getdata())) > 1
    assert Image.open(tmp_path / "out" / "face-window.png").width >= 720
    assert hashlib.sha256(tiny_weights.read_bytes()).hexdigest() == before  # only read


def test_self_test_fails_naming_the_file_when_weights_are_corrupted(qtbot, tmp_path, tiny_weights):
    broken = tmp_path / "broken.safetensors"
    data = bytearray(tiny_weights.read_bytes())
    data[-1] ^= 0xFF
    broken.write_bytes(bytes(data))
    (tmp_path / "broken.json").write_bytes(tiny_weights.with_suffix(".json").read_bytes())

    status, lines = _run(qtbot, "--weights", str(broken), "--output", str(tmp_path / "face.png"))

    assert status == 1
    assert lines[-1].startswith("FAILED: cannot load the weights:")
    assert str(broken) in lines[-1] and "sha256 does not match" in lines[-1]
    assert not (tmp_path / "face.png").exists()


def test_self_test_fails_when_the_weights_folder_is_empty(qtbot, tmp_path, monkeypatch):
    import mangagan_app.config

    monkeypatch.setattr(mangagan_app.config, "WEIGHTS_DIR", tmp_path)
    status, lines = _run(qtbot, "--output", str(tmp_path / "face.png"))

    assert status == 1
    assert lines[-1] == f"FAILED: no default weights: no .safetensors file in {tmp_path}"
