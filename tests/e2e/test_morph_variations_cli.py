"""mangagan morph and mangagan variations: the Generate tab's morph and grid without the window."""

import subprocess
import sys

import numpy as np
from PIL import Image


def mangagan(*args):
    return subprocess.run(
        [sys.executable, "-m", "mangagan_app", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_a_morph_from_an_exported_png_to_a_seed_is_a_gif_of_the_frames_asked_for(tiny_weights, tmp_path):
    face = tmp_path / "a.png"
    assert mangagan("generate", tiny_weights, "-n", "1", "--seed", "5", "-o", face).returncode == 0
    run = mangagan("morph", face, "77", "--frames", "6", "--weights", tiny_weights, "-o", tmp_path / "m.gif")
    assert run.returncode == 0, run.stderr
    with Image.open(tmp_path / "m.gif") as gif:
        first = np.asarray(gif.convert("RGB"))
        assert gif.n_frames >= 6  # the GIF bounces back, so A→B frames plus the way back
    assert np.abs(first.astype(int) - np.asarray(Image.open(face).convert("RGB")).astype(int)).mean() < 8


def test_variations_of_a_face_fill_a_grid_of_n_related_faces(tiny_weights, tmp_path):
    run = mangagan("variations", "12", "-n", "6", "--columns", "3", "--weights", tiny_weights, "-o", tmp_path / "v.png")
    assert run.returncode == 0, run.stderr
    with Image.open(tmp_path / "v.png") as grid:
        assert grid.size == (3 * 34 + 2, 2 * 34 + 2)  # 32-px faces with 2-px gaps


def test_a_morph_of_one_frame_or_to_a_jpeg_is_refused_and_writes_nothing(tiny_weights, tmp_path):
    for options, said in (
        (("--frames", "1", "-o", tmp_path / "m.gif"), "at least 2 frames"),
        (("-o", tmp_path / "m.jpg"), "write a .png (or a .gif for a morph)"),
    ):
        run = mangagan("morph", "1", "2", "--weights", tiny_weights, *options)
        assert run.returncode == 2 and said in run.stderr
    assert list(tmp_path.iterdir()) == []
