"""The trainer, the face set and the weights files, on a tiny real model and real sketchbook faces."""

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mangagan_app.config import TrainingConfig
from mangagan_app.core.attributes import VOCABULARY
from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.ml.checkpoint import WeightsError, export_run, load_generator, read_card, weights_files
from mangagan_app.ml.dataset import load_face_folder
from mangagan_app.ml.resume_state import RunFolderError, load_resume_state
from mangagan_app.ml.trainer import train

SIZE = 32


@pytest.fixture(scope="module")
def sketchbook(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sketchbook")
    write_sketchbook(folder, 256, size=SIZE, seed=3, workers=1)
    return folder


@pytest.fixture(scope="module")
def faces(sketchbook):
    return load_face_folder(sketchbook, SIZE)


def tiny_config(sketchbook, **overrides) -> TrainingConfig:
    settings = dict(
        data=str(sketchbook),
        resolution=SIZE,
        width=4,
        batch=32,
        epochs=2,
        tick_steps=2,
        preview_steps=8,
        checkpoint_minutes=60.0,
        threads=1,
    )
    settings.update(overrides)
    return TrainingConfig(**settings)


@pytest.fixture(scope="module")
def finished_run(sketchbook, faces, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    previews = []
    result = train(tiny_config(sketchbook), run, faces=faces, on_preview=previews.append)
    return run, result, previews


def stats_lines(run):
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def test_two_epochs_change_the_losses_and_write_previews_when_trained_on_the_sketchbook(finished_run):
    run, result, previews = finished_run
    assert (result.step, result.epoch, result.stopped) == (16, 2, False)
    stats = stats_lines(run)
    assert [s["step"] for s in stats] == list(range(2, 17, 2))
    for key in ("d_adv", "g_adv", "d_cls", "g_cls", "img_per_sec", "sec_per_tick"):
        assert key in stats[0]
    assert stats[0]["d_adv"] != stats[-1]["d_adv"] and stats[0]["g_cls"] != stats[-1]["g_cls"]
    assert [p.step for p in previews] == [8, 16]
    hair_rows = len(VOCABULARY.group("hair_colour").values)
    with Image.open(run / "previews" / "step_0000016.png") as im:
        assert im.size == (8 * (SIZE + 2) + 2, hair_rows * (SIZE + 2) + 2)
    assert json.loads((run / "config.json").read_text())["width"] == 4


def test_resume_gives_the_same_counters_and_weights_when_a_run_was_stopped_midway(
    sketchbook, faces, finished_run, tmp_path
):
    calls = {"n": 0}

    def stop_after_five() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    first = train(tiny_config(sketchbook), tmp_path, faces=faces, should_stop=stop_after_five)
    assert (first.stopped, first.step, first.epoch) == (True, 5, 0)
    assert load_resume_state(tmp_path)["batch_in_epoch"] == 5

    second = train(tiny_config(sketchbook), tmp_path, faces=faces, resume=True)
    assert (second.stopped, second.step, second.epoch) == (False, 16, 2)
    assert [s["step"] for s in stats_lines(tmp_path)] == list(range(2, 17, 2))
    # Same batches, flips and noise as the uninterrupted run: the same weights.
    resumed = load_resume_state(tmp_path)["G_ema"]
    uninterrupted = load_resume_state(finished_run[0])["G_ema"]
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_training_is_refused_when_the_folder_already_holds_a_run_or_settings_change(sketchbook, faces, finished_run):
    run = finished_run[0]
    with pytest.raises(RunFolderError, match="already holds a training run"):
        train(tiny_config(sketchbook), run, faces=faces)
    with pytest.raises(RunFolderError, match="width"):
        train(tiny_config(sketchbook, width=8), run, faces=faces, resume=True)


def test_face_set_reads_labels_and_skips_a_bad_image_when_loading_a_folder(sketchbook, tmp_path, caplog):
    for name in ("000000", "000001", "000002"):
        for suffix in (".png", ".txt"):
            (tmp_path / f"{name}{suffix}").write_bytes((sketchbook / f"{name}{suffix}").read_bytes())
    (tmp_path / "000001.txt").unlink()  # no tags: trains only the unconditional part
    (tmp_path / "000002.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with caplog.at_level(logging.WARNING):
        faces = load_face_folder(tmp_path, SIZE)
    assert len(faces) == 2 and faces.skipped[0][0].endswith("000002.png")
    assert "000002.png" in caplog.text
    assert faces.images.dtype == torch.uint8 and faces.images.shape == (2, 3, SIZE, SIZE)
    tags = (sketchbook / "000000.txt").read_text()
    expected, _ = VOCABULARY.encode(VOCABULARY.parse_tags(tags, strict=False)[0])
    assert np.array_equal(faces.cond[0].numpy(), expected) and faces.mask[0].min() == 1
    assert faces.mask[1].max() == 0
    x, _, _ = faces.batch(torch.tensor([0, 0]), torch.tensor([False, True]))
    assert torch.equal(x[0].flip(2), x[1]) and x.min() >= -1 and x.max() <= 1


@pytest.fixture(scope="module")
def exported(finished_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("weights") / "tiny"
    export_run(finished_run[0], out)
    return out


def test_exported_model_gives_identical_pixels_in_a_fresh_process_when_seed_and_tags_match(exported, tmp_path):
    from mangagan_app.core.attributes import VOCABULARY as vocab
    from mangagan_app.ml.sampling import generate, image_grid

    generator, card = load_generator(exported)
    assert not generator.training and card["training"]["steps"] == 16
    attrs, _ = vocab.parse_tags("blue_hair, glasses")
    here = image_grid(generate(generator, attrs, 6, seed=1), 6)
    out = tmp_path / "grid.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mangagan_app",
            "generate",
            str(exported) + ".safetensors",
            "-n",
            "6",
            "--tags",
            "blue_hair,glasses",
            "--seed",
            "1",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), here)


def test_generate_names_unknown_tags_when_the_vocabulary_lacks_them(exported):
    proc = subprocess.run(
        [sys.executable, "-m", "mangagan_app", "generate", str(exported), "--tags", "blue_hair, wings, halo"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "wings" in proc.stderr and "halo" in proc.stderr


def copy_weights(exported, tmp_path):
    st, card = weights_files(exported)
    target = tmp_path / "copy"
    weights_files(target)[0].write_bytes(st.read_bytes())
    weights_files(target)[1].write_bytes(card.read_bytes())
    return target


def test_loading_is_refused_with_the_file_named_when_weights_are_corrupted(exported, tmp_path):
    target = copy_weights(exported, tmp_path)
    st = weights_files(target)[0]
    data = bytearray(st.read_bytes())
    data[len(data) // 2] ^= 0xFF
    st.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256") as err:
        load_generator(target)
    assert err.value.path == st


def test_loading_is_refused_when_the_file_is_truncated_even_with_a_matching_checksum(exported, tmp_path):
    import hashlib

    target = copy_weights(exported, tmp_path)
    st, card_path = weights_files(target)
    st.write_bytes(st.read_bytes()[:200])
    card = read_card(target)
    card["sha256"] = hashlib.sha256(st.read_bytes()).hexdigest()
    card_path.write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="safetensors"):
        load_generator(target)


def test_loading_is_refused_when_the_card_s_vocabulary_or_architecture_does_not_fit_the_weights(exported, tmp_path):
    target = copy_weights(exported, tmp_path)
    card_path = weights_files(target)[1]
    card = read_card(target)

    other = dict(card, vocabulary=[dict(g) for g in card["vocabulary"]])
    other["vocabulary"][0]["values"] = other["vocabulary"][0]["values"][:-1]
    card_path.write_text(json.dumps(other))
    with pytest.raises(WeightsError, match="condition size 38 ≠ vocabulary size 37"):
        load_generator(target)

    wider = dict(card, architecture=dict(card["architecture"], width=8))
    card_path.write_text(json.dumps(wider))
    with pytest.raises(WeightsError, match="do not fit the architecture") as err:
        load_generator(target)
    assert err.value.path.name == "copy.safetensors"

    card_path.unlink()
    with pytest.raises(WeightsError, match="model card missing"):
        load_generator(target)


def test_worker_processes_decode_the_same_pixels_when_a_folder_is_big(sketchbook, faces, monkeypatch):
    import mangagan_app.ml.dataset as dataset

    monkeypatch.setattr(dataset, "_POOL_THRESHOLD", 0)
    monkeypatch.setattr(dataset, "_CHUNK", 100)
    seen = []
    pooled = load_face_folder(sketchbook, SIZE, progress=lambda done, total: seen.append((done, total)))
    assert torch.equal(pooled.images, faces.images) and torch.equal(pooled.cond, faces.cond)
    assert seen[-1] == (256, 256) and len(seen) == 3
