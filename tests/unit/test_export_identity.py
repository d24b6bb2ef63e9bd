"""The same checkpoint exports the same bytes, and a face keeps how it was enlarged."""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin
from safetensors.torch import save as save_safetensors

from mangagan_app.core.face_recipe import RECIPE_CHUNK, Enlargement, FaceRecipe, RecipeError, png_bytes, read_png_face
from mangagan_app.ml.checkpoint import export_run, read_card, safetensors_bytes
from mangagan_app.ml.generator_service import GeneratorService, find_weights_by_sha256


def test_safetensors_bytes_are_one_of_the_orders_safetensors_itself_writes_when_saved_again():
    tensors = {"b.weight": torch.randn(3, 4), "a": torch.ones(2, dtype=torch.bfloat16), "c": torch.arange(5)}
    metadata = {"format": "x/1", "architecture": json.dumps({"width": 4, "name": "é"})}
    data, others = safetensors_bytes(tensors, metadata)
    known = {hashlib.sha256(data).hexdigest(), *others}
    assert len(known) == 2  # two metadata keys, two orders
    # safetensors orders the metadata differently from one call to the next; every order is known
    assert {hashlib.sha256(save_safetensors(tensors, metadata=metadata)).hexdigest() for _ in range(20)} <= known
    assert safetensors_bytes(tensors, metadata)[0] == data


def test_a_checkpoint_exported_twice_gives_identical_weights_and_old_faces_find_the_model(tiny_weights, tmp_path):
    run = tiny_weights.parent.parent / "run"  # the conftest fixture's layout
    first, _ = export_run(run, tmp_path / "a" / "tiny")
    second, _ = export_run(run, tmp_path / "b" / "tiny")
    assert first.read_bytes() == second.read_bytes()
    card = read_card(first)
    assert card["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    earlier = card["sha256_same_weights"][0]  # what an export before the fix may have written
    assert find_weights_by_sha256(tmp_path / "a", earlier) == first
    service = GeneratorService.load(tiny_weights)
    recipe = service.recipe(3).with_(model_sha256=earlier)
    service.card = {**service.card, "sha256_same_weights": [earlier]}
    assert service.check(recipe) == []


def test_a_png_keeps_its_enlargement_and_every_slider_when_exported(tmp_path):
    recipe = FaceRecipe(noise=np.zeros(8), condition=np.zeros(4), sliders=(1.5, 0.0, -2.0), seed=1, model_sha256="m")
    path = tmp_path / "face.png"
    path.write_bytes(png_bytes(Image.new("RGB", (64, 64)), recipe, enlargement=Enlargement(4, True)))
    assert read_png_face(path) == (recipe, Enlargement(4, True))
    with Image.open(path) as im:
        assert "Sliders: +1.50, +0.00, -2.00, Enlarged: 4x Lanczos" in im.text["parameters"]
    path.write_bytes(png_bytes(Image.new("RGB", (8, 8)), recipe))
    assert read_png_face(path)[1] is None  # as written before the enlargement was stored
    info = PngImagePlugin.PngInfo()
    info.add_text(RECIPE_CHUNK, json.dumps({**recipe.to_dict(), "scale": 99}))
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    with pytest.raises(RecipeError, match="scale must be a whole number from 1 to 8"):
        read_png_face(path)


def test_a_half_export_is_half_the_bytes_draws_the_same_faces_within_rounding_and_can_be_fine_tuned(
    tiny_weights, tmp_path
):
    from mangagan_app.ml.checkpoint import discriminator_file, load_for_fine_tune, load_generator
    from mangagan_app.ml.networks import Discriminator

    run = tiny_weights.parent.parent / "run"
    full, _ = export_run(run, tmp_path / "full" / "tiny")
    half, _ = export_run(run, tmp_path / "half" / "tiny", half=True)
    assert read_card(half)["storage"] == "float16" and read_card(full)["storage"] == "float32"
    for a, b in ((full, half), (discriminator_file(full), discriminator_file(half))):
        assert 0.45 < b.stat().st_size / a.stat().st_size < 0.6
    g_full, _ = load_generator(full)
    g_half, _ = load_generator(half)
    assert all(p.dtype == torch.float32 for p in g_half.parameters())
    z, cond = torch.randn(8, g_full.arch.z_dim), torch.zeros(8, g_full.arch.cond_dim)
    faces_full, faces_half = g_full(z, cond), g_half(z, cond)
    difference = (faces_full - faces_half).abs()
    assert 0 < difference.max() < 0.05  # pixels in [-1, 1]: under 2 of 255 levels after rounding
    state = load_for_fine_tune(half)
    D = Discriminator(g_half.arch)
    D.load_state_dict(state["D"])  # the float16 D goes into a float32 network for training
    assert all(p.dtype == torch.float32 for p in D.parameters())
