"""Growing a trained run into a FiLM generator, fine-tuning from another run, LR decay."""

import json

import pytest
import torch

from mangagan_app.config import TrainingConfig
from mangagan_app.core.attributes import VOCABULARY
from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.ml.checkpoint import export_run, load_generator, read_card, training_steps
from mangagan_app.ml.dataset import load_face_folder
from mangagan_app.ml.networks import Architecture, Generator
from mangagan_app.ml.resume_state import RunFolderError, load_resume_state
from mangagan_app.ml.trainer import train

SIZE = 32


@pytest.fixture(scope="module")
def sketchbook(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sketchbook")
    write_sketchbook(folder, 128, size=SIZE, seed=11, workers=1)
    return folder


@pytest.fixture(scope="module")
def faces(sketchbook):
    return load_face_folder(sketchbook, SIZE)


def config(sketchbook, **overrides) -> TrainingConfig:
    settings = dict(
        data=str(sketchbook),
        resolution=SIZE,
        width=4,
        batch=32,
        epochs=2,
        tick_steps=2,
        preview_steps=100,
        checkpoint_minutes=60.0,
        threads=1,
    )
    settings.update(overrides)
    return TrainingConfig(**settings)


@pytest.fixture(scope="module")
def input_run(sketchbook, faces, tmp_path_factory):
    run = tmp_path_factory.mktemp("input_run")
    train(config(sketchbook, g_conditioning="input"), run, faces=faces)
    return run


def conditions(n: int) -> torch.Tensor:
    cond = torch.zeros(n, VOCABULARY.dim)
    cond[torch.arange(n), torch.arange(n) % 13] = 1.0  # one hair colour each
    return cond


def test_film_generator_draws_exactly_the_input_generator_when_grown_from_it(input_run):
    state = load_resume_state(input_run)
    old = Generator(Architecture.from_dict(state["architecture"]))
    old.load_state_dict(state["G_ema"])
    grown = Generator(Architecture(SIZE, 4, 128, VOCABULARY.dim, "both", "film"))
    missing, unexpected = grown.load_state_dict(state["G_ema"], strict=False)
    assert unexpected == [] and missing and all(k.startswith("films.") for k in missing)
    z = torch.randn(6, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(grown.eval()(z, conditions(6)), old.eval()(z, conditions(6)))


def test_warm_started_film_run_learns_its_film_layers_and_records_the_earlier_steps(
    sketchbook, faces, input_run, tmp_path
):
    run = tmp_path / "film"
    result = train(config(sketchbook, g_conditioning="film", init_from=str(input_run), epochs=1), run, faces=faces)
    assert (result.step, result.stopped) == (4, False)
    state = load_resume_state(run)
    assert state["warm_start"]["from"] == str(input_run) and state["warm_start"]["steps"] == 8
    films = [v for k, v in state["G"].items() if k.startswith("films.")]
    assert films and any(v.abs().sum() > 0 for v in films)  # they started at zero
    # D was copied, not drawn afresh: after 4 steps its first layer is still near the source's.
    source_d = load_resume_state(input_run)["D"]["body.0.parametrizations.weight.original"]
    fresh_d = torch.nn.init.normal_(torch.empty_like(source_d), 0.0, 0.02)
    assert (state["D"]["body.0.parametrizations.weight.original"] - source_d).norm() < (fresh_d - source_d).norm() / 2

    weights, _ = export_run(run, tmp_path / "model" / "film")
    card = read_card(weights)
    assert card["architecture"]["g_conditioning"] == "film"
    assert card["training"]["warm_start"]["steps"] == 8 and training_steps(card) == 4 + 8
    generator, _ = load_generator(weights)
    with torch.no_grad():
        assert generator(torch.randn(2, 128), conditions(2)).shape == (2, 3, SIZE, SIZE)


def test_a_run_started_from_another_keeps_its_architecture_and_a_misfit_is_refused_naming_the_source(
    sketchbook, faces, input_run, tmp_path
):
    train(config(sketchbook, width=8, init_from=str(input_run)), tmp_path / "wide", faces=faces)
    assert load_resume_state(tmp_path / "wide")["architecture"]["width"] == 4
    assert json.loads((tmp_path / "wide" / "config.json").read_text())["width"] == 4
    bare = load_resume_state(input_run)
    del bare["architecture"]  # saved before checkpoints stored it: nothing says the width
    torch.save(bare, tmp_path / "bare.pt")
    with pytest.raises(RunFolderError, match="bare.pt.*does not fit"):
        train(config(sketchbook, width=8, init_from=str(tmp_path / "bare.pt")), tmp_path / "bare", faces=faces)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunFolderError, match="junk.pt"):
        train(config(sketchbook, init_from=str(tmp_path / "junk.pt")), tmp_path / "junk", faces=faces)


def test_a_model_grown_to_twice_its_size_keeps_its_blocks_and_channels_and_starts_a_new_d(input_run, tmp_path, caplog):
    big = tmp_path / "faces64"
    write_sketchbook(big, 64, size=2 * SIZE, seed=12, workers=1)
    run = tmp_path / "grown"
    cfg = config(big, resolution=2 * SIZE, init_from=str(input_run), epochs=1)
    result = train(cfg, run, faces=load_face_folder(big, 2 * SIZE))
    assert result.step == 2
    source, state = load_resume_state(input_run), load_resume_state(run)
    arch = Architecture.from_dict(state["architecture"])
    small = Architecture.from_dict(source["architecture"])
    assert (arch.resolution, arch.width, arch.max_width_factor) == (2 * SIZE, 2, 16)
    assert arch.channels() == [*small.channels(), 2]  # the old blocks' channels, then a thinner one
    assert state["warm_start"]["grown_from_px"] == SIZE
    grown_g = Generator(arch)
    grown_g.load_state_dict(state["G_ema"])
    # The stem is where 2 steps at a low learning rate move least from where it started: the source's.
    moved = (state["G"]["stem.0.weight"] - source["G"]["stem.0.weight"]).norm()
    fresh = torch.nn.init.normal_(torch.empty_like(source["G"]["stem.0.weight"]), 0.0, 0.02)
    assert moved < (fresh - source["G"]["stem.0.weight"]).norm() / 2
    assert state["D"]["body.0.parametrizations.weight.original"].shape[0] == 2  # a new D of the new size
    with torch.no_grad():
        assert grown_g.eval()(torch.randn(2, 128), conditions(2)).shape == (2, 3, 2 * SIZE, 2 * SIZE)
    with caplog.at_level("WARNING"):
        train(
            config(big, resolution=2 * SIZE, init_from=str(input_run), freeze_d=1),
            tmp_path / "frozen",
            faces=load_face_folder(big, 2 * SIZE),
        )
    assert "starts a new discriminator: --freeze-d 1 has nothing to keep" in caplog.text
    d = load_resume_state(tmp_path / "frozen")["D"]["body.0.parametrizations.weight.original"]
    assert d.shape[0] == 2  # the new D, trained in full


def test_a_card_written_before_the_width_factor_existed_builds_the_same_networks():
    card = {"resolution": 64, "width": 32, "z_dim": 128, "cond_dim": 38, "conditioning": "both"}
    assert Architecture.from_dict(card).channels() == [256, 128, 64, 32]
    assert Architecture.from_dict({**card, "resolution": 128}).channels() == [256, 256, 128, 64, 32]


def test_learning_rates_fall_linearly_to_zero_over_the_last_steps_when_decay_is_set(sketchbook, faces, tmp_path):
    seen = []
    train(
        config(sketchbook, epochs=2, lr_decay_steps=4, lr_g=1e-3, lr_d=2e-3),
        tmp_path,
        faces=faces,
        should_stop=lambda: False,
        progress=lambda p: None,
    )
    state = load_resume_state(tmp_path)
    # The last of 8 steps ran with factor (8 - 7) / 4.
    seen.append(state["opt_g"]["param_groups"][0]["lr"])
    seen.append(state["opt_d"]["param_groups"][0]["lr"])
    assert seen == pytest.approx([1e-3 / 4, 2e-3 / 4])


def test_learning_rates_rise_linearly_from_zero_over_the_first_steps_when_warm_up_is_set(sketchbook, faces, tmp_path):
    stop_after = iter([False, False, True])
    train(
        config(sketchbook, lr_warmup_steps=8, lr_g=1e-3, lr_d=2e-3),
        tmp_path,
        faces=faces,
        should_stop=lambda: next(stop_after, True),
    )
    state = load_resume_state(tmp_path)
    # Two steps ran; the second (step 1) with factor 2 / 8.
    assert state["step"] == 2
    lrs = [state[opt]["param_groups"][0]["lr"] for opt in ("opt_g", "opt_d")]
    assert lrs == pytest.approx([1e-3 / 4, 2e-3 / 4])


def test_a_run_saved_before_the_new_settings_existed_resumes_as_it_was_trained(sketchbook, faces, tmp_path):
    stop_after = iter([False, False, True])
    train(config(sketchbook, g_conditioning="input"), tmp_path, faces=faces, should_stop=lambda: next(stop_after, True))
    state = load_resume_state(tmp_path)
    for key in ("g_conditioning", "lr_decay_steps", "init_from"):
        del state["config"][key]
    del state["architecture"]["g_conditioning"]
    torch.save(state, tmp_path / "checkpoint.pt")
    saved = json.loads((tmp_path / "config.json").read_text())
    old_config = {k: v for k, v in saved.items() if k not in ("g_conditioning", "lr_decay_steps", "init_from")}
    resumed_config = TrainingConfig.from_dict(old_config)
    assert resumed_config.g_conditioning == "input" and TrainingConfig().g_conditioning == "film"
    result = train(resumed_config, tmp_path, faces=faces, resume=True)
    assert (result.step, result.stopped) == (8, False)


@pytest.mark.parametrize(("augment", "augment_p", "expected_p"), [("none", 0.5, 0.0), ("fixed", 0.2, 0.2)])
def test_a_run_resumed_with_augmentation_switched_off_or_fixed_obeys_the_new_setting(
    sketchbook, faces, tmp_path, augment, augment_p, expected_p
):
    stop_after = iter([False, False, True])
    train(
        config(sketchbook, augment="ada", augment_p=0.5),
        tmp_path,
        faces=faces,
        should_stop=lambda: next(stop_after, True),
    )
    result = train(config(sketchbook, augment=augment, augment_p=augment_p), tmp_path, faces=faces, resume=True)
    assert (result.step, result.stopped) == (8, False)
    ticks = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert ticks[0]["aug_p"] > 0.4  # the adaptive run before the resume
    assert [t["aug_p"] for t in ticks if t["step"] > 2] == [expected_p] * 3
    assert json.loads((tmp_path / "config.json").read_text())["augment"] == augment
