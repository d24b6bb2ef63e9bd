"""The hair-colour sample sheet: conditions, faces and ``mangagan generate --hair-rows``."""

import subprocess
import sys

import numpy as np
from PIL import Image

from mangagan_app.core.attributes import VOCABULARY
from mangagan_app.ml.checkpoint import load_generator
from mangagan_app.ml.sampling import hair_colour_rows, hair_colour_sheet

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
    refused = subprocess.run([*base, "--tags", "blue_hair", "-o", str(tmp_path / "no.png")], capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2 and "hair colour" in refused.stderr and not (tmp_path / "no.png").exists()
