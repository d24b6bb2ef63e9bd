"""The tagger, the originality check and the evaluation, with the shipped tagger and real small models."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from mangagan_app.cli import main
from mangagan_app.core.reference_faces import detection_flags, render_sketchbook_faces
from mangagan_app.core.sketchbook.dataset import sketchbook_face, tag_line
from mangagan_app.ml.checkpoint import read_card
from mangagan_app.ml.evaluation import evaluate_images, load_faces_array, originality_report
from mangagan_app.ml.originality import (
    FeatureIndexError,
    find_closest,
    index_path,
    index_training_set,
    load_index,
    load_training_faces,
    save_index,
    training_face,
)
from mangagan_app.ml.tagger import DEFAULT_TAGGER, TaggerError, accuracy_report, load_tagger

# Seeds nobody trains on: the tagger learnt from 7101, the default model from 2026.
UNSEEN_SEED = 4242


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tagger():
    return load_tagger()


@pytest.fixture(scope="module")
def tiny_data(tiny_weights):
    """The 32-px sketchbook folder the tiny model was trained on (see conftest)."""
    return tiny_weights.parent.parent / "faces"


@pytest.fixture(scope="module")
def tiny_index(tiny_data, tagger):
    return index_training_set(tiny_data, tagger, resolution=32, unseen_count=48, workers=1)


def test_shipped_tagger_reads_unseen_sketchbook_faces_far_above_chance_when_loaded(tagger):
    images, attrs = render_sketchbook_faces(UNSEEN_SEED, 120, 64, workers=1)
    cond = np.stack([tagger.vocabulary.encode(a)[0] for a in attrs])
    groups = accuracy_report(tagger.read(images)[1], cond)["groups"]
    # Chance: 1/13 hair colours, 1/10 eye colours, 42 % for always answering "long".
    assert groups["hair_colour"] > 0.9
    assert groups["eye_colour"] > 0.7
    assert groups["hair_style"] > 0.75
    assert groups["tags"] > 0.85


def test_tagger_load_names_the_file_when_the_weights_are_corrupted(tmp_path):
    for suffix in (".safetensors", ".json"):
        shutil.copy(DEFAULT_TAGGER.with_suffix(suffix), tmp_path / f"tagger{suffix}")
    data = bytearray((tmp_path / "tagger.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / "tagger.safetensors").write_bytes(bytes(data))
    with pytest.raises(TaggerError, match="tagger.safetensors.*sha256"):
        load_tagger(tmp_path / "tagger.safetensors")


def test_originality_flags_exact_training_images_as_near_copies_when_fed_in_as_generated(tiny_index, tiny_data, tagger):
    for name in ("000003.png", "000077.png"):
        face = training_face(tiny_index, list(tiny_index.names).index(name))
        result = find_closest(tiny_index, face, k=3, tagger=tagger)
        assert result.verdict == "near copy"
        assert result.matches[0].name == name
        assert result.matches[0].distance < 0.2 * result.calibration.near_copy  # float16 index: not exactly 0


def test_originality_calls_fresh_sketchbook_faces_original_when_never_trained_on(tiny_index, tagger):
    fresh = [sketchbook_face(UNSEEN_SEED, 100 + i, 32)[1] for i in range(12)]
    verdicts = [find_closest(tiny_index, face, tagger=tagger).verdict for face in fresh]
    assert verdicts.count("near copy") <= 1
    assert verdicts.count("original") >= 9


def test_memorisation_rate_is_all_when_the_generated_faces_are_training_faces_even_mirrored(tiny_data, tagger):
    training = load_training_faces(tiny_data, 32)
    train, names = training.faces.images.permute(0, 2, 3, 1).numpy(), training.names
    unseen, _ = render_sketchbook_faces(UNSEEN_SEED, 48, 32, workers=1)
    train_f = tagger.features(train)
    copied = originality_report(train[:16], unseen, train, train_f, names, tagger)
    mirrored_copies = originality_report(train[16:32, :, ::-1], unseen, train, train_f, names, tagger)
    fresh = originality_report(unseen[:24], unseen[24:], train, train_f, names, tagger)
    assert copied["memorisation_rate"] == 1.0
    assert mirrored_copies["memorisation_rate"] == 1.0
    assert copied["closest_pairs"][0]["pixel_distance"] < 1e-4
    assert fresh["memorisation_rate"] <= 0.1


def test_index_round_trips_and_is_refused_for_another_tagger_when_saved(tiny_index, tmp_path, tagger):
    path = save_index(tiny_index, tmp_path / "tiny.index.npz")
    again = load_index(path, tagger)
    assert again.names.tolist() == tiny_index.names.tolist()
    assert np.array_equal(again.features, tiny_index.features)
    assert again.calibration == tiny_index.calibration
    tagger_sha = tagger.sha256
    try:
        tagger.sha256 = "0" * 64
        with pytest.raises(FeatureIndexError, match="another tagger"):
            load_index(path, tagger)
    finally:
        tagger.sha256 = tagger_sha


def test_training_thumbnails_are_redrawn_from_the_sketchbook_when_the_files_are_gone(tiny_index):
    moved = type(tiny_index)(**{**tiny_index.__dict__, "data_dir": "/nonexistent"})
    redrawn = training_face(moved, 7)
    on_disk = training_face(tiny_index, 7)
    assert np.array_equal(np.asarray(redrawn), np.asarray(on_disk))


def test_detector_finds_sketchbook_faces_at_twice_their_size_when_run_in_worker_processes():
    faces, _ = render_sketchbook_faces(UNSEEN_SEED, 12, 64, workers=1)
    blank = np.full((4, 64, 64, 3), 255, np.uint8)
    flags = detection_flags(np.concatenate([faces, blank]), scale=2, workers=2)
    assert flags[:12].mean() >= 0.75
    assert not flags[12:].any()


@pytest.mark.slow
def test_evaluation_runs_end_to_end_and_writes_json_card_and_index_when_the_model_is_tiny(
    tiny_weights, tiny_data, tmp_path, capsys
):
    for suffix in (".safetensors", ".json"):
        shutil.copy(tiny_weights.with_suffix(suffix), tmp_path / f"tiny{suffix}")
    weights = tmp_path / "tiny.safetensors"
    code = main(
        [
            "evaluate",
            str(weights),
            "--data",
            str(tiny_data),
            "--n",
            "40",
            "--per-value",
            "2",
            "--detect",
            "6",
            "--unseen",
            "40",
            "--workers",
            "1",
            "--json",
            str(tmp_path / "eval.json"),
            "--write-card",
            "--write-index",
            "--pairs",
            str(tmp_path / "pairs.png"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert Image.open(tmp_path / "pairs.png").size == (8 * 34 + 2, 2 * 34 + 2)  # 8 pairs of 32-px faces
    assert "hair_colour" in out and "memorisation rate" in out and "Inception" in out and "coverage" in out
    assert "not measured" not in out and "tagger on real training faces with that label" in out
    result = json.loads((tmp_path / "eval.json").read_text())
    assert {
        "model",
        "data",
        "settings",
        "tagger",
        "attributes",
        "fidelity",
        "originality",
        "detectability",
        "goals",
        "seconds",
    } <= set(result)
    values = result["attributes"]["values"]
    assert len(values) == 38
    assert all(0.0 <= v["read_as_asked"] <= 1.0 for v in values.values())
    assert "absent_read_as_absent" in values["glasses"]
    assert set(result["attributes"]["groups"]) == {"hair_colour", "hair_style", "eye_colour", "tags"}
    assert result["fidelity"]["generated_vs_real"] > result["fidelity"]["real_vs_real_floor"] >= 0.0
    prdc = result["fidelity"]["prdc"]
    assert prdc["k"] == 5 and set(prdc["generated_vs_real"]) == {"precision", "recall", "density", "coverage"}
    assert prdc["real_vs_real_floor"]["coverage"] > prdc["generated_vs_real"]["coverage"]
    assert 0.0 <= result["originality"]["memorisation_rate"] <= 1.0
    assert 0.0 <= result["detectability"]["generated_found"] <= 1.0
    metrics = read_card(weights)["metrics"]
    assert metrics["memorisation_rate"] == result["originality"]["memorisation_rate"]
    assert metrics["prdc_tagger_features"] == prdc
    assert metrics["command"].startswith("mangagan evaluate")
    index = load_index(index_path(weights))
    assert len(index) == 128 and index_path(weights).stat().st_size < 100_000


def test_evaluate_command_explains_when_the_data_folder_is_missing(tiny_weights, tmp_path, capsys):
    code = main(["evaluate", str(tiny_weights), "--data", str(tmp_path / "nowhere")])
    assert code == 1
    assert "nowhere" in capsys.readouterr().err


@pytest.fixture(scope="module")
def colour_tagger(tagger, tmp_path_factory):
    """The shipped tagger with a card that knows only hair and eye colour, like one trained on real crops."""
    folder = tmp_path_factory.mktemp("colour_tagger")
    for suffix in (".safetensors", ".json"):
        shutil.copy(DEFAULT_TAGGER.with_suffix(suffix), folder / f"tagger{suffix}")
    card = json.loads((folder / "tagger.json").read_text())
    card["known_groups"] = ["hair_colour", "eye_colour"]
    card["training"]["test_kind"] = "folder"
    (folder / "tagger.json").write_text(json.dumps(card))
    return folder / "tagger.safetensors"


@pytest.mark.slow
def test_evaluation_of_folder_data_measures_known_groups_and_skips_sketchbook_parts_when_given_unseen_faces(
    tiny_weights, tiny_data, colour_tagger, tmp_path, capsys
):
    data, unseen = tmp_path / "faces", tmp_path / "unseen"
    shutil.copytree(tiny_data, data)
    (data / "metadata.jsonl").unlink()  # any folder of faces with sidecars, not a sketchbook
    for sidecar in data.glob("*.txt"):  # and one whose tags never say silver hair
        sidecar.write_text(sidecar.read_text().replace("silver_hair", "1girl"))
    unseen.mkdir()
    faces, attrs = render_sketchbook_faces(UNSEEN_SEED, 40, 32, workers=1)
    for i, (face, attr) in enumerate(zip(faces, attrs, strict=True)):
        Image.fromarray(face).save(unseen / f"{i:03d}.png")
        if i % 2:  # half of them tagged, like the measuring part of a real set
            (unseen / f"{i:03d}.txt").write_text(tag_line(attr))
    args = [
        "evaluate",
        str(tiny_weights),
        "--data",
        str(data),
        "--tagger",
        str(colour_tagger),
        "--n",
        "40",
        "--per-value",
        "2",
        "--unseen",
        "40",
        "--workers",
        "1",
        "--json",
        str(tmp_path / "eval.json"),
    ]
    assert main(args) == 1
    assert "--unseen-dir" in capsys.readouterr().err
    assert main([*args, "--unseen-dir", str(unseen)]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "eval.json").read_text())
    assert set(result["attributes"]["groups"]) == {"hair_colour", "eye_colour"}
    assert len(result["attributes"]["values"]) == 12 + 10 and "silver_hair" not in result["attributes"]["values"]
    assert result["tagger"]["unmeasured_groups"] == ["hair_style", "tags"]
    assert result["detectability"] is None and "detectability: not measured" in out
    assert "unseen faces of its test folder" in out and "coverage" in out
    assert result["originality"]["unseen_source"].startswith("40 faces from")
    assert result["tagger"]["ceiling_faces"] == "unseen faces"  # the tagger may have trained on the training faces
    assert set(result["tagger"]["accuracy_unseen_real_faces"]) == {"hair_colour", "eye_colour"}
    assert "tagger on real unseen faces with that label" in out


def test_evaluate_images_measures_every_metric_with_floors_when_given_arrays_of_several_sizes(colour_tagger):
    tagger = load_tagger(colour_tagger)
    generated, attrs = render_sketchbook_faces(UNSEEN_SEED, 60, 32, workers=1)
    real, real_attrs = render_sketchbook_faces(UNSEEN_SEED + 1, 80, 64, workers=1)
    training, _ = render_sketchbook_faces(UNSEEN_SEED + 2, 60, 48, workers=1)
    asked = np.stack([tagger.vocabulary.encode(a)[0] for a in attrs])
    real_cond = np.stack([tagger.vocabulary.encode(a)[0] for a in real_attrs])
    real_mask = np.ones_like(real_cond)
    real_mask[::2, :13] = 0.0  # half the real faces do not know their hair colour
    result = evaluate_images(
        generated, real=real, training=training, tagger=tagger, asked=asked, real_cond=real_cond, real_mask=real_mask
    )
    assert result["faces_per_side"] == 40 and result["k"] == 5
    for name, floor in (
        ("frechet", "frechet_floor"),
        ("precision", "floor_precision"),
        ("recall", "floor_recall"),
        ("density", "floor_density"),
        ("coverage", "floor_coverage"),
    ):
        assert np.isfinite(result[name]) and np.isfinite(result[floor])
    assert 0.0 <= result["floor_coverage"] <= 1.0 and result["frechet_floor"] >= 0.0
    # The "generated" faces are real sketchbook faces the tagger reads well, never trained on.
    assert result["as_asked_hair_colour"] > 0.85 and result["as_asked_eye_colour"] > 0.6
    assert result["tagger_ceiling_hair_colour"] > 0.85
    assert not any(key.endswith(("hair_style", "_tags")) for key in result)  # the tagger does not know them
    assert result["memorisation"] <= 0.1
    again = evaluate_images(generated, real=real, training=training, tagger=tagger, asked=asked)
    assert again["precision"] == result["precision"] and "tagger_ceiling_hair_colour" not in again


def test_evaluate_images_finds_all_faces_memorised_when_the_generated_faces_are_training_faces(tagger):
    training, _ = render_sketchbook_faces(UNSEEN_SEED, 40, 32, workers=1)
    real, _ = render_sketchbook_faces(UNSEEN_SEED + 1, 40, 32, workers=1)
    result = evaluate_images(training[:20], real=real, training=training, tagger=tagger)
    assert result["memorisation"] == 1.0
    assert not any(key.startswith("as_asked") for key in result)  # unconditional: nothing was asked


def test_evaluate_images_refuses_arrays_that_are_not_uint8_faces_when_given(tagger):
    faces, _ = render_sketchbook_faces(UNSEEN_SEED, 12, 32, workers=1)
    with pytest.raises(ValueError, match="real: need uint8"):
        evaluate_images(faces, real=faces.astype(np.float32), training=faces, tagger=tagger)
    with pytest.raises(ValueError, match="asked: need shape"):
        evaluate_images(faces, real=faces, training=faces, tagger=tagger, asked=np.zeros((12, 3)))


def test_load_faces_array_gives_the_first_faces_at_the_asked_size_when_limited(tiny_data):
    faces = load_faces_array(tiny_data, 24, limit=5)
    assert faces.shape == (5, 24, 24, 3) and faces.dtype == np.uint8


def test_detectability_enlarges_faces_below_128_px_and_reads_128_px_faces_as_drawn():
    from mangagan_app.ml.evaluation import EvaluationSettings, _detectability

    class FaceSet:  # what _detectability reads of one: its length and images (N, 3, H, W)
        def __init__(self, images):
            self.images = images

        def __len__(self):
            return len(self.images)

    settings = EvaluationSettings(detect=3, workers=1)
    for size, upscale in ((64, "2x bicubic"), (128, "none")):
        drawn = np.stack([np.asarray(sketchbook_face(7, i, size)[1].convert("RGB")) for i in range(3)])
        faces = FaceSet(torch.from_numpy(drawn).permute(0, 3, 1, 2))
        result = _detectability(drawn, faces, np.arange(3), settings, lambda *a: None, None)
        assert result["upscale"] == upscale and result["faces_each"] == 3
        # the same sketchbook faces on both sides: the detector must agree with itself
        assert result["generated_found"] == result["real_found"]
