"""A model's vocabulary comes from its data; a model with a discriminator fine-tunes from its own pixels."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from mangagan_app.config import TrainingConfig
from mangagan_app.core.attributes import (
    OWN_TAGS_GROUP,
    VOCABULARY,
    auto_vocabulary,
    normalise_tag,
    vocabulary_from_file,
    with_own_tags,
)
from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.ml.checkpoint import (
    WeightsError,
    card_vocabulary,
    discriminator_file,
    export_run,
    load_for_fine_tune,
    load_generator,
    read_card,
)
from mangagan_app.ml.networks import Discriminator, Generator, regrow_conditions
from mangagan_app.ml.resume_state import load_resume_state
from mangagan_app.ml.trainer import GanModels, _in_source_architecture, _warm_start, train

SIZE = 32
CLIP = "star_hair_clip"


def test_tags_are_read_the_way_kohya_and_danbooru_users_write_them():
    assert normalise_tag(" School Uniform ") == "school_uniform"
    assert normalise_tag(r"kurumi_\(date_a_live\)") == "kurumi_(date_a_live)"
    assert normalise_tag("kurumi_(date_a_live)") == "kurumi_(date_a_live)"
    assert normalise_tag("(smile:1.2)") == "smile"
    assert normalise_tag("((blue hair))") == "blue_hair"
    assert normalise_tag("[glasses]") == "glasses"
    assert normalise_tag(r"(kurumi_\(date_a_live\):0.8)") == "kurumi_(date_a_live)"
    attrs, unknown = VOCABULARY.parse_tags("1girl, (blue hair:1.3), [smile], sailor collar", strict=False)
    assert attrs.choices == {"hair_colour": "blue"} and attrs.tags == {"smile"}
    assert unknown == ["sailor collar"]


def test_auto_vocabulary_adds_the_frequent_tags_leaves_out_meta_and_rare_ones_and_says_which():
    texts = (
        ["1girl, blue_hair, school_uniform, highres, kurumi_\\(date_a_live\\)"] * 6
        + ["solo, red_hair, ahoge, absurdres"] * 5
        + ["blonde_hair, star_hair_clip"] * 2
        + [None, ""]
    )
    choice = auto_vocabulary(texts, min_faces=5, max_tags=2)
    own = choice.vocabulary.group(OWN_TAGS_GROUP)
    # most frequent first, ties by name; meta tags (1girl, solo, highres, absurdres) never
    assert own.values == ("kurumi_(date_a_live)", "school_uniform")
    assert choice.vocabulary.groups[:-1] == VOCABULARY.groups
    assert choice.left_out == {"ahoge": 5, "star_hair_clip": 2}
    assert choice.left_out_sentence() == "ahoge (5 faces), star_hair_clip (2 faces)"
    attrs, unknown = choice.vocabulary.parse_tags("school uniform, (kurumi_\\(date_a_live\\):1.1)", strict=True)
    assert attrs.tags == {"school_uniform", "kurumi_(date_a_live)"} and unknown == []
    vec, mask = choice.vocabulary.encode(attrs)
    assert vec[-2:].tolist() == [1.0, 1.0] and mask[-2:].tolist() == [1.0, 1.0]


def test_a_tag_on_every_face_is_left_out_because_nothing_contrasts_it():
    texts = ["1girl, blue_hair, my_oc, school_uniform"] * 6 + ["red_hair, my_oc"] * 6
    choice = auto_vocabulary(texts, min_faces=5)
    assert choice.vocabulary.group(OWN_TAGS_GROUP).values == ("school_uniform",)
    assert choice.on_every_face == ("my_oc",) and choice.left_out == {"my_oc": 12}
    # A face without a sidecar is a face without the tag: then it is a choice again.
    assert auto_vocabulary([*texts, None], min_faces=5).on_every_face == ()


def test_a_vocabulary_file_lists_extra_tags_or_holds_a_whole_vocabulary(tmp_path):
    listed = tmp_path / "tags.txt"
    listed.write_text("# my characters\nstar_hair_clip\nMaid Headdress, blue_hair\n", encoding="utf-8")
    vocabulary = vocabulary_from_file(listed)
    assert vocabulary.group(OWN_TAGS_GROUP).values == ("star_hair_clip", "maid_headdress")
    whole = tmp_path / "vocabulary.json"
    whole.write_text(json.dumps({"vocabulary": vocabulary.to_json()}), encoding="utf-8")
    assert vocabulary_from_file(whole) == vocabulary
    empty = tmp_path / "empty.txt"
    empty.write_text("blue_hair\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt: names no tag outside"):
        vocabulary_from_file(empty)


def test_regrown_condition_layers_draw_the_same_pixels_until_a_new_tag_is_asked_for(one_torch_thread):
    shipped, _ = load_generator("weights/mangagan-sketchbook64.safetensors")
    grown_vocabulary = with_own_tags(VOCABULARY, [CLIP, "maid_headdress"])
    arch = shipped.arch
    grown = Generator(type(arch)(**{**arch.to_dict(), "cond_dim": grown_vocabulary.dim})).eval()
    old, new = VOCABULARY.slot_names(), grown_vocabulary.slot_names()
    grown.load_state_dict(regrow_conditions(shipped.state_dict(), old, new, arch.z_dim))
    z = torch.randn(4, arch.z_dim, generator=torch.Generator().manual_seed(3))
    cond = torch.zeros(4, VOCABULARY.dim)
    cond[:, [0, 13, 18]] = 1.0
    with torch.no_grad():
        before = shipped(z, cond)
        after = grown(z, torch.cat([cond, torch.zeros(4, 2)], dim=1))
    assert torch.equal(before, after)
    # A layer moved to another position keeps its weights: drop a slot and the rest follow.
    fewer = regrow_conditions(shipped.state_dict(), old, old[1:], arch.z_dim)
    assert torch.equal(fewer["films.0.weight"], shipped.state_dict()["films.0.weight"][:, 1:])


@pytest.fixture(scope="module")
def own_tag_faces(tmp_path_factory):
    """Sketchbook faces whose sidecars also name a tag of the artist's (every other face)
    and a meta tag, as a Danbooru export writes them."""
    folder = tmp_path_factory.mktemp("own_tags")
    write_sketchbook(folder, 96, size=SIZE, seed=21, workers=1)
    for i, sidecar in enumerate(sorted(folder.glob("*.txt"))):
        extra = ", star hair clip" if i % 2 == 0 else ""
        sidecar.write_text(sidecar.read_text(encoding="utf-8").strip() + extra + ", highres", encoding="utf-8")
    return folder


def tiny_config(data, **overrides) -> TrainingConfig:
    settings = dict(
        data=str(data),
        resolution=SIZE,
        width=4,
        batch=16,
        epochs=2,
        tick_steps=3,
        preview_steps=1000,
        checkpoint_minutes=60.0,
        threads=1,
    )
    settings.update(overrides)
    return TrainingConfig(**settings)


@pytest.fixture(scope="module")
def own_tag_model(own_tag_faces, tmp_path_factory):
    root = tmp_path_factory.mktemp("own_tag_model")
    train(tiny_config(own_tag_faces, vocabulary="auto"), root / "run")
    weights, _ = export_run(root / "run", root / "weights" / "mine")
    return weights


def test_an_auto_vocabulary_is_in_the_card_and_left_out_tags_are_reported_once(own_tag_faces, tmp_path, caplog):
    caplog.set_level("WARNING")
    train(tiny_config(own_tag_faces, epochs=1), tmp_path / "default")
    said = [r.getMessage() for r in caplog.records if "not be learned" in r.getMessage()]
    assert len(said) == 1 and "star_hair_clip (48 faces)" in said[0] and "--vocabulary auto" in said[0]
    state = load_resume_state(tmp_path / "default")
    assert state["data"]["tags_left_out"] == {"star_hair_clip": 48}
    assert card_vocabulary(state, tmp_path) == VOCABULARY


def test_a_tag_on_every_face_is_said_once_and_gets_no_checkbox(tmp_path, caplog):
    folder = tmp_path / "faces"
    write_sketchbook(folder, 32, size=SIZE, seed=5, workers=1)
    for sidecar in folder.glob("*.txt"):
        sidecar.write_text(sidecar.read_text(encoding="utf-8").strip() + ", my_oc", encoding="utf-8")
    caplog.set_level("WARNING")
    train(tiny_config(folder, epochs=1, vocabulary="auto"), tmp_path / "run")
    said = [r.getMessage() for r in caplog.records if "every face carries" in r.getMessage()]
    assert len(said) == 1 and "my_oc" in said[0]
    state = load_resume_state(tmp_path / "run")
    assert state["data"]["tags_on_every_face"] == ["my_oc"]
    assert card_vocabulary(state, tmp_path) == VOCABULARY  # no group of own tags: nothing to tick


def test_a_model_trained_with_auto_vocabulary_knows_its_own_tag_everywhere(own_tag_model, tmp_path):
    card = read_card(own_tag_model)
    vocabulary = card_vocabulary(card, own_tag_model)
    assert vocabulary.group(OWN_TAGS_GROUP).values == (CLIP,)
    assert "tags_left_out" not in card["training"]["data"]

    def mangagan(*args):
        return subprocess.run(
            [sys.executable, "-m", "mangagan_app", *map(str, args)], capture_output=True, text=True, timeout=300
        )

    listed = mangagan("tags", own_tag_model)
    assert listed.returncode == 0 and CLIP in listed.stdout and "1 of them its data's own" in listed.stdout
    face = tmp_path / "clip.png"
    made = mangagan(
        "generate", own_tag_model, "--tags", "star hair clip, blue_hair", "--seed", "4", "-n", "1", "-o", face
    )
    assert made.returncode == 0, made.stderr
    again = tmp_path / "again.png"
    restored = mangagan("restore", face, "--weights", own_tag_model, "-o", again)
    assert restored.returncode == 0, restored.stderr
    assert np.array_equal(_pixels(face), _pixels(again))
    assert CLIP in _recipe(again).attributes(vocabulary).tags
    # The app's default model does not know the tag, and says where to look.
    unknown = mangagan("generate", "--tags", CLIP, "-o", tmp_path / "x.png")
    assert unknown.returncode == 2 and "unknown tag: star_hair_clip" in unknown.stderr
    assert not (tmp_path / "x.png").exists()


def _pixels(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _recipe(path):
    from mangagan_app.core.face_recipe import read_png_recipe

    return read_png_recipe(path)


def test_an_exported_model_ships_its_discriminator_and_a_fine_tune_starts_from_its_exact_pixels(
    own_tag_model, one_torch_thread
):
    card = read_card(own_tag_model)
    assert card["discriminator"]["file"] == discriminator_file(own_tag_model).name
    source = load_for_fine_tune(own_tag_model)
    cfg = _in_source_architecture(TrainingConfig(init_from=str(own_tag_model), width=32, resolution=SIZE), source)
    assert cfg.width == 4
    vocabulary = with_own_tags(card_vocabulary(card, own_tag_model), ["maid_headdress"])
    arch = type(load_generator(own_tag_model)[0].arch)(
        **{**card["architecture"], "cond_dim": vocabulary.dim, "g_conditioning": "film"}
    )
    models = GanModels(cfg, arch, torch.device("cpu"))
    _warm_start(models, cfg, source, vocabulary)
    original, _ = load_generator(own_tag_model)
    z = torch.randn(3, arch.z_dim, generator=torch.Generator().manual_seed(0))
    cond = torch.zeros(3, original.arch.cond_dim)
    cond[:, [1, 14, 20]] = 1.0
    with torch.no_grad():
        want = original(z, cond)
        got = models.g_ema.eval()(z, torch.cat([cond, torch.zeros(3, 1)], dim=1))
    assert torch.equal(want, got)
    d = Discriminator(original.arch)
    d.load_state_dict(source["D"])  # the shipped D is a whole discriminator of that architecture


def test_fine_tuning_with_frozen_d_blocks_keeps_them_and_trains_the_rest(own_tag_model, own_tag_faces, tmp_path):
    train(tiny_config(own_tag_faces, epochs=1, init_from=str(own_tag_model), freeze_d=2), tmp_path / "tuned")
    before = load_for_fine_tune(own_tag_model)["D"]
    after = load_resume_state(tmp_path / "tuned")["D"]
    for key in before:
        if key.startswith(("body.0.", "body.2.")) and not key.endswith(("_u", "_v")):
            assert torch.equal(before[key], after[key]), key
    assert not torch.equal(
        before["body.4.parametrizations.weight.original"], after["body.4.parametrizations.weight.original"]
    )
    state = load_resume_state(tmp_path / "tuned")
    assert state["warm_start"]["from"] == str(own_tag_model)
    # "default" in a fine-tune is the vocabulary of the model it starts from
    assert card_vocabulary(state, tmp_path).group(OWN_TAGS_GROUP).values == (CLIP,)


def test_a_card_without_the_new_fields_still_loads_and_says_why_it_cannot_be_fine_tuned(tmp_path):
    old = tmp_path / "old.safetensors"
    shutil.copy("weights/mangagan-sketchbook64.safetensors", old)
    card = read_card("weights/mangagan-sketchbook64.safetensors")
    card.pop("discriminator", None)
    card.pop("vocabulary")  # cards written before vocabularies were stored
    old.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
    generator, loaded = load_generator(old)
    assert generator.arch.cond_dim == VOCABULARY.dim
    assert card_vocabulary(loaded, old) == VOCABULARY
    with pytest.raises(WeightsError, match="ships no discriminator, so it cannot be fine-tuned"):
        load_for_fine_tune(old)


def test_a_model_with_its_own_tags_is_evaluated_in_the_tagger_s_vocabulary_with_its_own_tags_off(
    own_tag_model, own_tag_faces, one_torch_thread
):
    from mangagan_app.ml.evaluation import EvaluationSettings, evaluate

    settings = EvaluationSettings(n=64, per_value=4, detect=8, unseen=64, workers=1, batch=64, threads=1)
    report, _ = evaluate(own_tag_model, own_tag_faces, settings=settings)
    assert "blue_hair" in report["attributes"]["values"]
    assert CLIP not in report["attributes"]["values"]
