"""The plan of a run before it starts: faces counted, batch fitted, steps, time, run folders."""

import json

import pytest

from mangagan_app.config import CropConfig, TrainingConfig
from mangagan_app.core.catalogue import Catalogue
from mangagan_app.core.cropping.pipeline import crop_sources
from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.ml.training_plan import (
    MIN_STEPS,
    FaceCount,
    count_training_faces,
    cpu_images_per_second,
    fit_note,
    fitted_batch,
    format_duration,
    fresh_run_folder,
    holds_run,
    measured_images_per_second,
    plan_training,
    runs_to_start_from,
    suggested_settings,
)


def test_the_batch_is_lowered_to_fit_when_the_data_is_smaller_than_one_batch():
    assert fitted_batch(49, 64) == 32
    assert fitted_batch(64, 64) == 64 and fitted_batch(5000, 64) == 64
    assert fitted_batch(2, 64) == 2 and fitted_batch(3, 64) == 2
    with pytest.raises(ValueError, match="at least 2"):
        fitted_batch(1, 64)


def test_suggested_settings_lengthen_a_run_when_the_data_fills_too_few_steps():
    defaults = TrainingConfig()
    assert suggested_settings(4000, defaults) == (64, 40)  # 62 steps a pass: 40 passes are enough
    batch, epochs = suggested_settings(49, defaults)
    assert (batch, epochs) == (32, MIN_STEPS)  # one step a pass
    assert suggested_settings(1000, defaults) == (64, 134)  # 15 steps a pass
    assert fit_note(49, defaults) == (
        "Fitted to 49 faces: 32 faces per step (fewer than the usual 64) and "
        "2,000 passes (more than the usual 40) for 2,000 steps."
    )
    assert fit_note(4000, defaults) == ""


def test_a_plan_for_few_faces_says_the_batch_was_lowered_and_that_scratch_is_risky_when_planned():
    plan = plan_training(
        TrainingConfig(epochs=900, leave_core_for_gui=True), FaceCount(49, "kept faces"), images_per_second=100.0
    )
    assert (plan.batch, plan.asked_batch, plan.steps) == (32, 64, 900) and plan.batch_lowered
    assert plan.seconds == pytest.approx(900 * 32 / 100.0) and plan.measured
    assert plan.summary() == "Trains on 49 kept faces: 900 steps of 32 faces (900 passes), about 5 min."
    lowered, few_steps, scratch = plan.notes
    assert lowered == "Faces per step lowered from 64 to 32: 49 faces are fewer than one step of 64."
    assert few_steps.startswith("900 steps are few") and '"Start from"' in scratch
    fine_tune = plan_training(
        TrainingConfig(epochs=2000, init_from="runs/a"), FaceCount(49, "kept faces"), images_per_second=100.0
    )
    assert fine_tune.notes == (lowered,)


def test_a_plan_guesses_the_time_on_the_cpu_when_no_earlier_run_measured_it():
    cfg = TrainingConfig(device="cpu", threads=1, precision="fp32")
    plan = plan_training(cfg, FaceCount(6400, "face images"))
    assert not plan.measured and plan.summary().endswith("(a first guess).")
    assert plan.seconds == pytest.approx(40 * 100 * 64 / 110.0)
    assert cpu_images_per_second(TrainingConfig(resolution=128), 1, False) == pytest.approx(110.0 / 4)
    assert cpu_images_per_second(TrainingConfig(width=16), 1, False) > 300  # 330 measured
    quick = plan_training(cfg, FaceCount(64, "face images"), images_per_second=1000.0)
    assert quick.summary() == "Trains on 64 face images: 40 steps of 64 faces (40 passes), under a minute."
    assert format_duration(20) == "under a minute" and format_duration(7 * 60) == "7 min"
    assert format_duration(2 * 3600 + 10 * 60) == "2 h 10 min"


def test_the_speed_of_an_earlier_run_with_the_same_networks_is_used_when_there_is_one(tmp_path):
    def run(name, width, rates):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(TrainingConfig(width=width).to_dict()))
        (folder / "stats.jsonl").write_text(
            "".join(json.dumps({"step": i, "img_per_sec": r}) + "\n" for i, r in enumerate(rates))
        )

    assert measured_images_per_second(tmp_path / "none", TrainingConfig()) is None
    run("narrow", 16, [300.0, 310.0, 320.0])
    run("a", 32, [50.0, 90.0, 80.0, 85.0])
    assert measured_images_per_second(tmp_path, TrainingConfig()) == 85.0
    assert measured_images_per_second(tmp_path, TrainingConfig(width=16)) == 310.0
    assert measured_images_per_second(tmp_path, TrainingConfig(width=48)) is None


def test_faces_are_counted_without_decoding_when_given_a_folder_or_a_reviewed_dataset(tmp_path, three_face_art):
    write_sketchbook(tmp_path / "faces", 5, size=32, seed=1, workers=1)
    assert count_training_faces(tmp_path / "faces") == FaceCount(5, "face images")
    with pytest.raises(FileNotFoundError):
        count_training_faces(tmp_path / "missing")

    crop_sources([three_face_art], tmp_path / "dataset", CropConfig(size=64, workers=1))
    with Catalogue(tmp_path / "dataset") as catalogue:
        ids = catalogue.face_ids()
        catalogue.set_decisions({ids[0]: "keep", ids[1]: "reject"})
    count = count_training_faces(tmp_path / "dataset")
    assert (count.faces, count.what) == (1, "kept faces of the reviewed dataset")
    assert len(ids) == 3 and count.note.startswith("1 crop is not reviewed yet")
    with Catalogue(tmp_path / "dataset") as catalogue:
        catalogue.set_decisions({ids[0]: "unreviewed"})
    assert count_training_faces(tmp_path / "dataset").note.startswith("2 crops are not reviewed yet")


def test_a_second_run_gets_a_new_folder_when_the_first_one_holds_a_run(tmp_path):
    first = tmp_path / "run-20261202-153000"
    assert fresh_run_folder(first) == first
    first.mkdir()
    (first / "checkpoint.pt").write_bytes(b"")
    assert holds_run(first)
    second = fresh_run_folder(first, now=1_800_000_000.0)
    assert second.parent == tmp_path and second.name.startswith("run-2027") and not holds_run(second)

    own = tmp_path / "my-oc"
    own.mkdir()
    (own / "config.json").write_text("{}")
    assert fresh_run_folder(own) == tmp_path / "my-oc-2"
    (tmp_path / "my-oc-2").mkdir()
    (tmp_path / "my-oc-2" / "stats.jsonl").write_text("")
    assert fresh_run_folder(own) == fresh_run_folder(tmp_path / "my-oc-2") == tmp_path / "my-oc-3"


def _logged_run(folder, cfg: TrainingConfig, steps: int, warning: str = "", checkpoint: bool = True):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    lines = [{"step": s, "d_adv": 1.0, "d_real": 0.6, "d_fake": 0.4} for s in range(100, steps + 1, 100)]
    if warning:
        lines[-1]["warning"] = warning
    (folder / "stats.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if checkpoint:
        (folder / "checkpoint.pt").write_bytes(b"")
    return folder


def test_only_long_healthy_runs_with_fitting_networks_are_offered_to_start_from(tmp_path):
    cfg = TrainingConfig(width=16, g_conditioning="film")
    long = _logged_run(tmp_path / "runs" / "long", TrainingConfig(width=16, g_conditioning="input"), 6000)
    longer = _logged_run(tmp_path / "other" / "longer", TrainingConfig(width=16), 9000)
    _logged_run(tmp_path / "runs" / "short", TrainingConfig(width=16), 500)
    _logged_run(tmp_path / "runs" / "failed", TrainingConfig(width=16), 8000, warning="the discriminator has won")
    _logged_run(tmp_path / "runs" / "wider", TrainingConfig(width=32), 8000)
    _logged_run(tmp_path / "runs" / "no-checkpoint", TrainingConfig(width=16), 8000, checkpoint=False)
    offered = runs_to_start_from([tmp_path / "runs", tmp_path / "other", tmp_path / "missing"], cfg)
    assert offered == [(longer, 9000), (long, 6000)]  # an input-only G grows into a FiLM one
    # A FiLM G cannot shrink back into an input-only one.
    assert runs_to_start_from([tmp_path / "other"], TrainingConfig(width=16, g_conditioning="input")) == []
