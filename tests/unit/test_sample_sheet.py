"""The hair-colour sample sheet: conditions, faces and ``mangagan generate --hair-rows``."""

import subprocess
import sys

import numpy as np
from PIL import Image

from mangagan_app.core.attributes import VOCABULARY
from mangagan_app.ml.checkpoint import load_generator
from mangagan_app.ml.sampling import hair_colour_rows, hair_colour_sheet, preview_sheet

HAIR = VOCABULARY.group("hair_colour").values


def test_each_row_asks_for_one_hair_colour_and_each_column_keeps_the_given_tags():
    attrs, _ = VOCABULARY.parse_tags("hat, long_hair", strict=True)
    cond = hair_colour_rows(3, seed=4, attrs=attrs).numpy().reshape(len(HAIR), 3, VOCABULARY.dim)
    hair = slice(VOCABULARY.offset("hair_colour"), VOCABULARY.offset("hair_colour") + len(HAIR))
    for row in range(len(HAIR)):
        assert (cond[row, :, hair].argmax(axis=1) == row).all()
        others = np.delete(cond[row], np.arange(hair.start, hair.stop), axis=1)
        np.testing.assert_array_equal(others, np.delete(cond[0], np.arange(hair.start, hair.stop), axis=1))
    slots = VOCABULARY.slot_names()
    tags = [t for t in VOCABULARY.free_tags if cond[0, 0, slots.index(t)] == 1]
    assert tags == ["hat"] and (cond[:, :, slots.index("long_hair")] == 1).all()


def test_sheet_changes_down_a_column_only_with_the_hair_colour_when_drawn(tiny_weights):
    generator, _ = load_generator(tiny_weights)
    attrs, _ = VOCABULARY.parse_tags("", strict=True)
    faces = hair_colour_sheet(generator, attrs, 4, seed=9)
    size = generator.arch.resolution
    assert faces.shape == (len(HAIR) * 4, size, size, 3)
    assert not np.array_equal(faces[0], faces[4])  # blonde vs brown, same column
    np.testing.assert_array_equal(faces, hair_colour_sheet(generator, attrs, 4, seed=9))


def test_cli_writes_the_sheet_and_refuses_a_hair_colour_tag_when_asked_for_hair_rows(tiny_weights, tmp_path):
    out = tmp_path / "sheet.png"
    base = [sys.executable, "-m", "mangagan_app", "generate", str(tiny_weights), "--hair-rows", "--columns", "5"]
    done = subprocess.run([*base, "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    size = load_generator(tiny_weights)[0].arch.resolution
    with Image.open(out) as sheet:
        assert sheet.size == (5 * (size + 2) + 2, len(HAIR) * (size + 2) + 2)
    refused = subprocess.run(
        [*base, "--tags", "blue_hair", "-o", str(tmp_path / "no.png")], capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2 and "hair colour" in refused.stderr and not (tmp_path / "no.png").exists()


def _faces(colours: int, per_colour: int, side: int) -> np.ndarray:
    """Flat faces whose colour encodes (hair colour, noise): red = colour, green = noise."""
    faces = np.zeros((colours * per_colour, side, side, 3), np.uint8)
    for colour in range(colours):
        for noise in range(per_colour):
            faces[colour * per_colour + noise] = (10 + colour, 100 + noise, 7)
    return faces


def test_the_preview_has_a_column_per_hair_colour_with_even_gaps_and_whole_pixel_faces_when_fitted():
    faces = _faces(13, 8, 64)
    sheet = preview_sheet(faces, 8, 900, 480)
    # 13 columns of 64 px fit in 900 px; 7 rows of 64 px fit in 480.
    assert sheet.shape == (7 * 66 + 2, 13 * 66 + 2, 3)
    for colour in range(13):
        for row in range(7):
            y, x = 2 + row * 66, 2 + colour * 66
            assert (sheet[y : y + 64, x : x + 64] == (10 + colour, 100 + row, 7)).all()
            assert (sheet[y - 2 : y, x : x + 64] == 255).all() and (sheet[y : y + 64, x - 2 : x] == 255).all()
    big = preview_sheet(_faces(13, 8, 32), 8, 1400, 900)
    assert big.shape == (8 * 98 + 2, 13 * 98 + 2, 3)  # 96 px: three times their own size, all 8 rows


def test_the_preview_shrinks_the_faces_only_when_the_width_does_not_fit_them_at_their_size():
    sheet = preview_sheet(_faces(13, 8, 128), 8, 900, 480)
    tile = (900 - 2) // 13 - 2
    assert sheet.shape[1] == 13 * (tile + 2) + 2 and sheet.shape[0] == 6 * (tile + 2) + 2
    narrow = preview_sheet(_faces(13, 8, 64), 8, 300, 40)  # 20 px a face is all 300 px allow
    assert narrow.shape == (1 * 22 + 2, 13 * 22 + 2, 3)
