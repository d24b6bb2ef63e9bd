"""Named sliders: the look reader, fitting one direction per factor, measuring it, and the card/CLI plumbing."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mangagan_app.core.sketchbook.dataset import draw_look_faces, sketchbook_face, sketchbook_face_with_look
from mangagan_app.core.sketchbook.look import LOOK_FACTORS
from mangagan_app.ml.generator_service import GeneratorService
from mangagan_app.ml.look_reader import (
    LookReaderError,
    load_look_reader,
    r_squared,
    save_look_reader,
    train_look_reader,
)
from mangagan_app.ml.named_sliders import MIN_CHANGE, _spearman, fit_directions, store_named_sliders
from mangagan_app.ml.tagger import load_tagger


@pytest.fixture(scope="module")
def tiny_reader(tmp_path_factory, one_torch_thread):
    images, factors = draw_look_faces(256, seed=3, size=32)
    reader = train_look_reader(images, factors, width=8, epochs=2, batch=64)
    unseen, unseen_factors = draw_look_faces(64, seed=4, size=32)
    path = tmp_path_factory.mktemp("reader") / "look_reader"
    save_look_reader(reader, path, training={"faces": 256}, r2=r_squared(reader.read(unseen), unseen_factors))
    return path.with_suffix(".safetensors")


def test_a_face_drawn_with_its_look_has_the_same_pixels_as_the_sketchbook_face():
    _, plain = sketchbook_face(9, 4, 32)
    _, look, with_look = sketchbook_face_with_look(9, 4, 32)
    assert np.array_equal(np.asarray(plain), np.asarray(with_look))
    assert look.eye_size == pytest.approx(draw_look_faces(5, seed=9, size=32)[1][4][7])


def test_r_squared_is_one_for_a_perfect_reading_and_zero_for_the_mean():
    actual = np.random.default_rng(0).normal(size=(50, 3))
    assert np.allclose(r_squared(actual, actual), 1.0)
    assert np.allclose(r_squared(np.broadcast_to(actual.mean(0), actual.shape), actual), 0.0)


def test_each_fitted_direction_moves_its_reading_and_holds_the_others_when_readings_are_linear():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2000, 16))
    gradients = rng.normal(size=(4, 16))
    directions = fit_directions(z, z @ gradients.T + 0.01 * rng.normal(size=(2000, 4)))
    moved = directions @ gradients.T  # (direction, reading): how each direction moves each reading
    assert np.allclose(np.linalg.norm(directions, axis=1), 1.0)
    assert (np.abs(np.diag(moved)) > 0.1).all()
    off_diagonal = moved - np.diag(np.diag(moved))
    assert np.abs(off_diagonal).max() < 0.02 * np.abs(np.diag(moved)).min()


def test_spearman_is_one_when_monotonic_and_minus_one_when_reversed():
    values = np.arange(7.0)
    readings = np.stack([values**3, -values, values * 0.5 + 2])
    assert np.allclose(_spearman(values, readings), [1.0, -1.0, 1.0])


def test_the_look_reader_loads_as_saved_and_is_refused_naming_the_file_when_corrupted(tiny_reader, tmp_path):
    reader = load_look_reader(tiny_reader)
    images, _ = draw_look_faces(4, seed=5, size=32)
    assert reader.read(images).shape == (4, len(LOOK_FACTORS))
    broken = tmp_path / "look_reader.safetensors"
    shutil.copy(tiny_reader, broken)
    shutil.copy(tiny_reader.with_suffix(".json"), broken.with_suffix(".json"))
    data = bytearray(broken.read_bytes())
    data[-5] ^= 0xFF
    broken.write_bytes(bytes(data))
    with pytest.raises(LookReaderError, match="look_reader.safetensors: sha256 does not match"):
        load_look_reader(broken)


@pytest.mark.slow
def test_named_sliders_are_stored_measured_or_dropped_with_a_reason_for_every_factor(
    tiny_weights, tiny_reader, tmp_path, one_torch_thread
):
    weights = tmp_path / "tiny.safetensors"
    shutil.copy(tiny_weights, weights)
    shutil.copy(tiny_weights.with_suffix(".json"), weights.with_suffix(".json"))
    result = store_named_sliders(weights, load_look_reader(tiny_reader), load_tagger(), samples=600, faces=12)
    card = json.loads(weights.with_suffix(".json").read_text())["named_sliders"]
    assert {s["key"] for s in card["sliders"]} | set(card["dropped"]) == {f.key for f in LOOK_FACTORS}
    assert all(s["measure"]["change_per_unit"] >= MIN_CHANGE for s in card["sliders"])
    assert all("spread per unit" in why or "cannot read" in why for why in card["dropped"].values())
    assert len(result.kept) == len(card["sliders"])


def test_named_sliders_follow_the_unsupervised_ones_so_an_earlier_recipe_keeps_its_meaning(
    tiny_weights, named_tiny_weights
):
    plain = GeneratorService.load(tiny_weights)
    named = GeneratorService.load(named_tiny_weights)
    assert len(named.directions) == len(plain.directions) + 1
    assert named.directions.name(len(plain.directions)) == "Eye size" and named.directions.name(0) == ""
    earlier = plain.recipe(3, sliders=(1.5, 0.0, -1.0) + (0.0,) * (len(plain.directions) - 3))
    assert named.check(earlier) == []  # made before the named slider existed: no "directions changed" warning
    assert np.array_equal(named.render([earlier]), plain.render([earlier]))


def test_generate_moves_a_named_slider_by_name_and_refuses_an_unknown_name_listing_the_known(
    named_tiny_weights, tmp_path
):
    weights = named_tiny_weights

    def generate(*options):
        out = tmp_path / f"face{len(list(tmp_path.glob('face*')))}.png"
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "mangagan_app",
                "generate",
                str(weights),
                "-n",
                "1",
                "--seed",
                "4",
                "-o",
                str(out),
                *options,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return run, out

    _, still = generate()
    moved_run, moved = generate("--slider", "eye size=3")
    assert moved_run.returncode == 0, moved_run.stderr
    assert not np.array_equal(np.asarray(_image(still)), np.asarray(_image(moved)))
    refused, nothing = generate("--slider", "Nose length=1")
    assert refused.returncode == 2 and not nothing.exists()
    assert "no slider named nose length; the model's named sliders: Eye size" in refused.stderr


def _image(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB").copy()
