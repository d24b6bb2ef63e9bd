"""The Generate tab's state and edits without Qt: GenerateSession on a real tiny model."""

import numpy as np
import pytest

from mangagan_app.core.attributes import Attributes
from mangagan_app.core.face_history import FavouritesStore
from mangagan_app.ml.generate_session import GRID_FACES, GenerateSession
from mangagan_app.ml.generator_service import GeneratorService


@pytest.fixture(scope="module")
def service(tiny_weights):
    return GeneratorService.load(tiny_weights)


@pytest.fixture
def session(service, tmp_path):
    session = GenerateSession(FavouritesStore(tmp_path / "favourites.json"))
    assert session.use_model(service, first_seed=7)
    return session


def groups(service, *names):
    return [g for g in service.vocabulary.groups if g.name in names]


def test_a_new_model_starts_with_its_first_seed_and_every_slider_at_zero(session, service):
    assert session.current.seed == 7 and session.current.sliders == (0.0,) * len(service.directions)
    assert [e.label for e in session.history.entries] == ["Seed 7"]


def test_randomize_redraws_only_the_random_groups_and_a_locked_noise_stays(session, service):
    keep = Attributes({"hair_colour": "blue", "hair_style": "short", "eye_colour": "red"}, {"glasses"})
    assert session.randomize(123, keep=keep, random_groups=groups(service, "eye_colour"))
    attrs = session.current.attributes(service.vocabulary)
    assert attrs.choices["hair_colour"] == "blue" and attrs.choices["hair_style"] == "short"
    assert "glasses" in attrs.tags and session.current.seed == 123
    noise = session.current.noise
    session.randomize(456, keep=keep, random_groups=groups(service, "hair_colour"), lock_noise=True)
    assert np.array_equal(session.current.noise, noise) and session.history.entries[-1].label == "Randomize attributes"


def test_a_new_seed_and_new_attributes_are_edits_that_undo_and_redo(session, service):
    session.set_seed(99)
    before = session.current
    assert session.set_attributes(
        Attributes({**before.attributes(service.vocabulary).choices, "hair_colour": "red"}), "Red hair"
    )
    assert np.array_equal(session.current.noise, before.noise)  # the character stays
    assert not session.set_seed(99)  # already its seed: not an edit
    assert session.undo() and session.current == before
    assert session.redo() and session.current.attributes(service.vocabulary).choices["hair_colour"] == "red"
    assert session.back_to(0) and session.current.seed == 7 and session.history.entries[-1].label == "Back to: Seed 7"


def test_the_grid_holds_sixteen_relatives_with_the_current_attributes_and_a_pick_becomes_current(session):
    similar = session.new_grid(0.45)
    assert len(similar) == GRID_FACES
    assert all(np.array_equal(r.condition, session.current.condition) and r.seed is None for r in similar)
    distances = [float(np.linalg.norm(r.noise - session.current.noise)) for r in similar]
    strangers = session.new_grid(1.0)
    assert all(r.seed is not None for r in strangers)
    assert np.mean(distances) < np.mean([float(np.linalg.norm(r.noise - session.current.noise)) for r in strangers])
    assert session.pick(3) and session.current == strangers[3]
    assert not session.pick(GRID_FACES)


def test_a_morph_runs_from_a_to_b_and_its_frames_include_both_ends(session, service):
    a = session.current
    session.set_seed(31)
    b = session.current
    assert session.morph_at(0.5) is None and session.morph_frames(5) == []
    session.set_morph_end("a", a)
    session.set_morph_end("b", b)
    assert np.allclose(session.morph_at(0.0).noise, a.noise) and np.allclose(session.morph_at(1.0).noise, b.noise)
    frames = session.morph_frames(5)
    assert len(frames) == 5
    assert np.array_equal(np.asarray(frames[-1]), service.render([session.morph_at(1.0)])[0])


def test_sliders_reset_as_one_edit(session, service):
    moved = session.with_sliders((1.5,) + (0.0,) * (len(service.directions) - 1), 0.8)
    assert session.push(moved, "Sliders")
    assert session.reset_sliders() and session.current.sliders == (0.0,) * len(service.directions)
    assert session.current.truncation == pytest.approx(0.8)


def test_a_starred_face_is_kept_for_the_next_session(session, tmp_path, service):
    assert session.toggle_favourite() and session.is_starred(session.current)
    again = GenerateSession(FavouritesStore(tmp_path / "favourites.json"))
    again.use_model(service, first_seed=7)
    [(fav_id, recipe, _)] = again.favourite_recipes()
    assert recipe == session.current and again.favourite(fav_id) == recipe
    assert not again.toggle_favourite() and again.favourite_recipes() == []


def test_each_model_keeps_its_own_history_and_a_new_one_draws_the_same_character(session, named_tiny_weights):
    first_model, face = session.service, session.current
    other = GeneratorService.load(named_tiny_weights)
    other.sha256 = "another model"  # the same weights under another name: a second model to switch to
    assert session.use_model(other, first_seed=0)
    assert np.array_equal(session.current.noise, face.noise) and session.current.model_sha256 == "another model"
    assert not session.use_model(first_model, first_seed=0) and session.current == face
