"""The generator service, face recipes in PNGs, history and favourites, on a real tiny model."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mangagan_app.core.attributes import Attributes
from mangagan_app.core.face_history import EditHistory, FavouritesStore, HistoriesByModel
from mangagan_app.core.face_recipe import FaceRecipe, RecipeError, read_png_recipe, save_png
from mangagan_app.ml.generator_service import (
    ForeignModelError,
    GeneratorService,
    find_default_weights,
    frame_strip,
    gif_bytes,
    morph,
    morph_frames,
    upscale,
)


@pytest.fixture(scope="module")
def service(tiny_weights):
    return GeneratorService.load(tiny_weights)


def test_same_seed_gives_identical_pixels_when_loaded_twice(service, tiny_weights):
    again = GeneratorService.load(tiny_weights)
    a = service.render([service.recipe(7)])
    b = again.render([again.recipe(7)])
    assert np.array_equal(a, b)
    assert not np.array_equal(a, service.render([service.recipe(8)]))
    assert a.shape == (1, 32, 32, 3) and a.dtype == np.uint8


def test_changing_an_attribute_keeps_the_noise_and_changes_the_face_when_ticked(service):
    plain = service.recipe(3, Attributes({"hair_colour": "black"}))
    blue = service.recipe(3, Attributes({"hair_colour": "blue"}, {"glasses"}))
    assert np.array_equal(plain.noise, blue.noise)
    assert blue.attributes(service.vocabulary).choices["hair_colour"] == "blue"
    assert not np.array_equal(service.render([plain]), service.render([blue]))


def test_slider_moves_the_face_and_truncation_zero_gives_the_mean_face_when_set(service):
    base = service.recipe(11)
    moved = base.with_(sliders=(2.0,))
    assert len(service.directions) >= 10
    assert not np.array_equal(service.render([base]), service.render([moved]))
    mean_a = service.render([base.with_(truncation=0.0)])
    mean_b = service.render([service.recipe(12).with_(truncation=0.0, condition=base.condition)])
    assert np.array_equal(mean_a, mean_b)


def test_png_round_trip_restores_identical_pixels_when_exported_and_reopened(service, tmp_path):
    recipe = service.recipe(
        21, Attributes({"hair_colour": "pink"}, {"smile"}), sliders=(0.5, -1.25, 0, 3.0), truncation=0.7
    )
    pixels = service.render_image(recipe)
    path = save_png(tmp_path / "face.png", upscale(pixels, 4, smooth=False), recipe, service.vocabulary)
    restored = read_png_recipe(path)
    assert restored == recipe
    assert service.check(restored, path.name) == []
    assert np.array_equal(np.asarray(service.render_image(restored)), np.asarray(pixels))
    with Image.open(path) as im:
        assert im.size == (128, 128)
        assert "pink_hair" in im.text["parameters"] and "smile" in im.text["parameters"]


def test_png_is_refused_with_a_message_when_it_has_no_parameters_or_another_model(service, tmp_path):
    plain = tmp_path / "drawing.png"
    Image.new("RGB", (8, 8), "red").save(plain)
    with pytest.raises(RecipeError, match="drawing.png holds no MangaGAN face parameters"):
        read_png_recipe(plain)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(RecipeError, match="notes.png: not a readable image"):
        read_png_recipe(tmp_path / "notes.png")
    other = service.recipe(1).with_(model_sha256="f" * 64)
    save_png(tmp_path / "other.png", service.render_image(other), other)
    with pytest.raises(ForeignModelError, match="other.png was made with a different model"):
        service.check(read_png_recipe(tmp_path / "other.png"), "other.png")


def test_morph_endpoints_equal_a_and_b_and_the_middle_differs_when_rendered(service, tmp_path):
    a = service.recipe(1, Attributes({"hair_colour": "blonde"}))
    b = service.recipe(2, Attributes({"hair_colour": "blue"}), sliders=(1.0,))
    frames = morph_frames(service, a, b, 5)
    assert np.array_equal(np.asarray(frames[0]), np.asarray(service.render_image(a)))
    assert np.array_equal(np.asarray(frames[-1]), np.asarray(service.render_image(b)))
    middle = morph(a, b, 0.5)
    assert middle.seed is None and middle.condition.max() == pytest.approx(0.5)
    # slerp keeps the noise on the sphere instead of cutting through the low-norm middle
    assert np.linalg.norm(middle.noise) > 0.9 * min(np.linalg.norm(a.noise), np.linalg.norm(b.noise))
    gif = tmp_path / "morph.gif"
    gif.write_bytes(gif_bytes(frames))
    with Image.open(gif) as im:
        assert im.n_frames == 8  # 5 forward + 3 back (bounce)
    assert frame_strip(frames).size == (5 * 34 + 2, 36)


def test_directions_are_computed_and_cached_when_the_card_has_none(tiny_weights, tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(tiny_weights.with_suffix(suffix), folder / f"bare{suffix}")
    card = json.loads((folder / "bare.json").read_text())
    del card["directions"]
    (folder / "bare.json").write_text(json.dumps(card))
    first = GeneratorService.load(folder / "bare.safetensors", cache_dir=tmp_path / "cache")
    cached = list((tmp_path / "cache").glob("directions-*.json"))
    assert len(cached) == 1 and len(first.directions) >= 10
    second = GeneratorService.load(folder / "bare.safetensors", cache_dir=tmp_path / "cache")
    assert np.array_equal(first.directions.vectors, second.directions.vectors)
    assert np.allclose(np.linalg.norm(first.directions.vectors, axis=1), 1.0, atol=1e-5)


def test_default_weights_are_the_carded_default_or_the_newest_when_several_exist(tmp_path):
    assert find_default_weights(tmp_path) is None
    for name, mtime in (("old", 1000), ("new", 3000), ("chosen", 2000)):
        (tmp_path / f"{name}.safetensors").write_bytes(b"x")
        (tmp_path / f"{name}.json").write_text(json.dumps({"default": name == "chosen"}))
        os.utime(tmp_path / f"{name}.safetensors", (mtime, mtime))
    assert find_default_weights(tmp_path).name == "chosen.safetensors"
    (tmp_path / "chosen.json").write_text(json.dumps({}))
    assert find_default_weights(tmp_path).name == "new.safetensors"


def _recipe(seed: int) -> FaceRecipe:
    rng = np.random.default_rng(seed)
    return FaceRecipe(noise=rng.standard_normal(8), condition=np.zeros(4), seed=seed, model_sha256="m")


def test_undo_and_redo_walk_the_edits_and_a_new_edit_drops_redo_when_undone():
    history = EditHistory()
    for seed in range(3):
        assert history.push(_recipe(seed), f"Seed {seed}")
    assert not history.push(_recipe(2), "same again")
    assert history.undo().recipe == _recipe(1) and history.undo().recipe == _recipe(0)
    assert history.undo() is None
    assert history.redo().recipe == _recipe(1) and history.redo_label() == "Seed 2"
    history.push(_recipe(9), "Seed 9")
    assert not history.can_redo() and [e.label for e in history.entries] == ["Seed 0", "Seed 1", "Seed 9"]


def test_each_model_keeps_its_own_history_when_switched_to_another_and_back():
    histories = HistoriesByModel()
    first = histories.for_model("a")
    first.push(_recipe(1), "Seed 1")
    first.push(_recipe(2), "Seed 2")
    first.undo()
    other = histories.for_model("b")
    assert other is not first and other.entries == []
    other.push(_recipe(3), "Seed 3")
    again = histories.for_model("a")
    assert again is first and [e.label for e in again.entries] == ["Seed 1", "Seed 2"]
    assert again.current.recipe == _recipe(1) and again.can_redo()
    assert {e.label for e in histories.all_entries()} == {"Seed 1", "Seed 2", "Seed 3"}


def test_favourites_persist_and_a_damaged_file_is_set_aside_when_reopened(tmp_path):
    path = tmp_path / "favourites.json"
    store = FavouritesStore(path)
    store.add(_recipe(1), "Aiko")
    store.add(_recipe(2))
    store.add(_recipe(1))  # already starred: no duplicate
    reopened = FavouritesStore(path)
    assert [f.recipe for f in reopened.all()] == [_recipe(2), _recipe(1)]
    assert reopened.find(_recipe(1)).name == "Aiko"
    assert reopened.remove(_recipe(2)) and FavouritesStore(path).all() == reopened.all()
    assert reopened.all(model_sha256="other") == []
    path.write_text("{ not json")
    assert FavouritesStore(path).all() == [] and (tmp_path / "favourites.json.damaged").exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mangagan_app", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # three fresh Python processes importing torch
def test_cli_generate_then_restore_give_the_tab_s_pixels_when_given_the_same_parameters(
    service, tiny_weights, tmp_path
):
    made = _cli(
        "generate",
        str(tiny_weights),
        "-n",
        "1",
        "--seed",
        "5",
        "--tags",
        "green_eyes, smile",
        "--sliders",
        "0,1.5",
        "--variety",
        "0.8",
        "-o",
        str(tmp_path / "face.png"),
    )
    assert made.returncode == 0, made.stderr
    recipe = service.recipe(5, Attributes({"eye_colour": "green"}, {"smile"}), sliders=(0, 1.5), truncation=0.8)
    assert read_png_recipe(tmp_path / "face.png") == recipe
    again = _cli(
        "restore",
        str(tmp_path / "face.png"),
        "-o",
        str(tmp_path / "again.png"),
        "--weights",
        str(tiny_weights),
        "--scale",
        "2",
    )
    assert again.returncode == 0, again.stderr
    expected = np.asarray(upscale(service.render_image(recipe), 2, smooth=False))
    with Image.open(tmp_path / "again.png") as im:
        assert np.array_equal(np.asarray(im), expected)
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    refused = _cli("restore", str(plain), "-o", str(tmp_path / "x.png"), "--weights", str(tiny_weights))
    assert refused.returncode == 1 and "plain.png holds no MangaGAN face parameters" in refused.stderr
