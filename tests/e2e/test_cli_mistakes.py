"""Every mistake a person can make at the command line gets one sentence, the right exit
status and no change on disk; the cases the README's mistake table lists.

Each case runs the real CLI in a fresh process (``python -m mangagan_app``) and checks
the exit status (2: a wrong value, 1: a file or folder that cannot be used or work that
failed), the sentence, that no traceback is printed, and that nothing under the test's
folders was created, removed or changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mangagan_app.core.cropping import draw_reference_face
from mangagan_app.core.sketchbook.dataset import write_sketchbook

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # two OpenMP threads on a busy 2-core machine crawl


def mangagan(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mangagan_app", *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def ok(*args: str) -> subprocess.CompletedProcess:
    done = mangagan(*args)
    assert done.returncode == 0, done.stderr
    return done


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``roots``, each file with its size and modification time. (A folder's own
    time is left out: SQLite makes and removes its -wal file beside a catalogue it only reads.)"""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
        for root in roots
        for p in [root, *root.rglob("*")]
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict[str, Path]:
    """What the cases need, made by the code: faces, an empty folder, a finished run, a
    freshly cropped (unreviewed) dataset and a source folder."""
    root = tmp_path_factory.mktemp("cli_mistakes")
    write_sketchbook(root / "faces", 40, size=32, seed=21, workers=1)
    (root / "empty").mkdir()
    (root / "src").mkdir()
    canvas = Image.new("RGB", (400, 240), (220, 230, 240))
    canvas.paste(draw_reference_face(150), (20, 20))
    canvas.paste(draw_reference_face(110), (220, 60))
    canvas.save(root / "src" / "page.png")
    trained = ok(
        "train",
        str(root / "faces"),
        str(root / "run"),
        "--res",
        "32",
        "--width",
        "4",
        "--batch",
        "16",
        "--epochs",
        "1",
        "--threads",
        "1",
    )
    ok("crop", str(root / "src"), "--dataset", str(root / "dataset"), "--workers", "1")
    # a model exported before models shipped their discriminator
    shutil.copy(Path("weights/mangagan-sketchbook64.safetensors"), root / "old_model.safetensors")
    card = json.loads(Path("weights/mangagan-sketchbook64.json").read_text(encoding="utf-8"))
    card.pop("discriminator", None)
    (root / "old_model.json").write_text(json.dumps(card), encoding="utf-8")
    return {
        "root": root,
        "faces": root / "faces",
        "empty": root / "empty",
        "run": root / "run",
        "dataset": root / "dataset",
        "src": root / "src",
        "old_model": root / "old_model.safetensors",
        "trained": trained,
    }


# (id, arguments, exit status, the sentence or part of it). {out} is the test's own folder.
MISTAKES = [
    ("generate-n-0", ["generate", "-n", "0", "-o", "{out}/new/g.png"], 2, "argument -n: must be a positive whole"),
    (
        "generate-negative-seed",
        ["generate", "--seed", "-5", "-o", "{out}/new/g.png"],
        2,
        "argument --seed: a seed is a whole number from 0",
    ),
    (
        "generate-seed-too-big",
        ["generate", "--seed", "9000000000", "-o", "{out}/new/g.png"],
        2,
        "argument --seed: a seed is a whole number from 0 to 2147483647, not 9000000000",
    ),
    (
        "generate-unknown-tag",
        ["generate", "--tags", "blu_hair, smile", "-o", "{out}/new/g.png"],
        2,
        "unknown tag: blu_hair (did you mean blue_hair",
    ),
    (
        "generate-two-hair-colours",
        ["generate", "--tags", "blue_hair, red_hair", "-o", "{out}/new/g.png"],
        2,
        "blue_hair and red_hair both given",
    ),
    (
        "generate-sliders-not-numbers",
        ["generate", "-n", "1", "--sliders", "1.5,up", "-o", "{out}/new/g.png"],
        2,
        "--sliders takes comma-separated numbers",
    ),
    (
        "generate-one-face-options-on-a-grid",
        ["generate", "--scale", "4", "-o", "{out}/new/g.png"],
        2,
        "apply to one face: add -n 1",
    ),
    (
        "generate-a-checkpoint",
        ["generate", "{run}/checkpoint.pt", "-o", "{out}/new/g.png"],
        1,
        "is a training run, not an exported model: export it first with `mangagan export {run} weights/NAME`",
    ),
    ("generate-a-run-folder", ["generate", "{run}", "-o", "{out}/new/g.png"], 1, "export it first"),
    (
        "generate-missing-model",
        ["generate", "{out}/nope.safetensors", "-o", "{out}/new/g.png"],
        1,
        "nope.safetensors: no such model file",
    ),
    ("generate-output-is-a-folder", ["generate", "-o", "{out}"], 2, "is a folder; give a file name in it"),
    ("restore-missing-png", ["restore", "{out}/face.png", "-o", "{out}/new/again.png"], 1, "face.png: no such file"),
    (
        "restore-png-without-parameters",
        ["restore", "{src}/page.png", "-o", "{out}/new/again.png"],
        1,
        "page.png holds no MangaGAN face parameters",
    ),
    ("synth-count-0", ["synth", "{out}/new", "--count", "0"], 2, "argument --count: must be a positive whole"),
    ("synth-size-too-small", ["synth", "{out}/new", "--size", "8"], 2, "size must be 16 to 1024 px, not 8"),
    (
        "synth-into-a-file",
        ["synth", "{src}/page.png/faces", "--count", "1", "--size", "16"],
        1,
        "a file is in the way where a folder is needed",
    ),
    (
        "synth-sheet-too-many-colours",
        ["synth-sheet", "{out}/new/s.png", "--colours", "300"],
        2,
        "a palette has 2 to 256 colours",
    ),
    (
        "synth-scenes-no-workers",
        ["synth-scenes", "{out}/new", "--workers", "0"],
        2,
        "argument --workers: must be a positive whole number, not 0",
    ),
    (
        "train-cuda-without-cuda",
        ["train", "{faces}", "{out}/new", "--device", "cuda"],
        2,
        "--device cuda: no CUDA device here",
    ),
    ("train-epochs-0", ["train", "{faces}", "{out}/new", "--epochs", "0"], 2, "argument --epochs: must be a positive"),
    (
        "train-negative-learning-rate",
        ["train", "{faces}", "{out}/new", "--lr", "-1"],
        2,
        "argument --lr: must be more than 0",
    ),
    ("train-missing-data", ["train", "{out}/faces", "{out}/new", "--res", "32"], 1, "faces: no such folder"),
    (
        "train-folder-without-images",
        ["train", "{empty}", "{out}/new", "--res", "32", "--threads", "1"],
        1,
        "empty: no images (.png",
    ),
    (
        "train-batch-bigger-than-the-data",
        ["train", "{faces}", "{out}/new", "--res", "32", "--batch", "64", "--threads", "1"],
        1,
        "40 images are fewer than one batch of 64",
    ),
    (
        "train-resume-missing-run",
        ["train", "{faces}", "{out}/new", "--resume"],
        1,
        "no such run folder, so nothing to resume",
    ),
    (
        "train-resume-folder-without-a-run",
        ["train", "{faces}", "{empty}", "--resume"],
        1,
        "holds no training run to resume (no config.json)",
    ),
    (
        "train-resume-finished-run",
        ["train", "{faces}", "{run}", "--resume"],
        1,
        "has finished (2 steps, epoch 1 of 1); to train longer, resume it with more epochs: "
        "mangagan train {faces} {run} --resume --epochs 2",
    ),
    (
        "train-again-into-a-run",
        ["train", "{faces}", "{run}", "--res", "32", "--width", "4", "--batch", "16", "--threads", "1"],
        1,
        "already holds a training run; resume it",
    ),
    (
        "train-resume-other-settings",
        ["train", "{faces}", "{run}", "--resume", "--epochs", "3", "--width", "8"],
        1,
        "cannot resume with different width (4 → 8)",
    ),
    (
        "train-init-from-missing",
        ["train", "{faces}", "{out}/new", "--init-from", "{out}/old"],
        1,
        "--init-from {out}/old: no such run folder, checkpoint or model file",
    ),
    (
        "train-init-from-a-model-without-discriminator",
        ["train", "{faces}", "{out}/new", "--init-from", "{old_model}"],
        1,
        "old_model.json: this model ships no discriminator, so it cannot be fine-tuned",
    ),
    (
        "train-freeze-d-without-init-from",
        ["train", "{faces}", "{out}/new", "--freeze-d", "2"],
        2,
        "freeze_d keeps layers of the model a run starts from: give init_from too",
    ),
    (
        "train-freeze-d-too-many",
        ["train", "{faces}", "{out}/new", "--res", "32", "--init-from", "{run}", "--freeze-d", "9"],
        2,
        "freeze_d is 0 to 3 (D's blocks at 32 px), not 9",
    ),
    (
        "train-vocabulary-missing-file",
        ["train", "{faces}", "{out}/new", "--vocabulary", "{out}/tags.txt"],
        2,
        "--vocabulary {out}/tags.txt: give default, auto or an existing vocabulary file",
    ),
    ("pack-missing-data", ["pack", "{out}/faces", "{out}/new"], 1, "faces: no such folder"),
    ("pack-folder-without-images", ["pack", "{empty}", "{out}/new", "--workers", "1"], 1, "empty: no images (.png"),
    ("export-missing-run", ["export", "{out}/run", "{out}/new/model"], 1, "no such run folder"),
    ("export-folder-without-a-run", ["export", "{empty}", "{out}/new/model"], 1, "holds no checkpoint.pt"),
    ("export-onto-a-folder", ["export", "{run}", "{out}"], 2, "is a folder; give the model a name in it"),
    (
        "crop-mistyped-source",
        ["crop", "{out}/art", "--dataset", "{out}/new"],
        1,
        "art: no such file or folder; check the path (nothing was cropped)",
    ),
    ("crop-folder-without-images", ["crop", "{empty}", "--dataset", "{out}/new"], 1, "no images (.bmp"),
    (
        "crop-bad-margin",
        ["crop", "{src}", "--dataset", "{out}/new", "--margin", "5"],
        2,
        "margin must be between 0 and 2, not 5.0",
    ),
    ("review-export-missing-dataset", ["review-export", "{out}/ds", "{out}/new"], 1, "ds: no such folder"),
    (
        "review-export-folder-without-catalogue",
        ["review-export", "{empty}", "{out}/new"],
        1,
        "no catalogue.sqlite here (not a dataset folder)",
    ),
    (
        "review-export-nothing-kept",
        ["review-export", "{dataset}", "{out}/new"],
        1,
        "none of the 2 crops in {dataset} is kept (0 kept, 0 rejected, 2 unreviewed): crops must be kept before they "
        "are exported",
    ),
    (
        "review-overlapping-thresholds",
        ["review", "{dataset}", "--keep-above", "0.5", "--reject-below", "0.9"],
        2,
        "would be kept and rejected",
    ),
    (
        "review-likelihood-out-of-range",
        ["review", "{dataset}", "--keep-above", "2"],
        2,
        "a detector likelihood is between 0 and 1, not 2",
    ),
    ("review-missing-dataset", ["review", "{out}/ds", "--keep-all"], 1, "ds: no such folder"),
    ("evaluate-n-0", ["evaluate", "--data", "{faces}", "--n", "0"], 2, "argument --n: must be a positive whole"),
    (
        "evaluate-missing-data",
        ["evaluate", "--data", "{out}/faces", "--json", "{out}/new/r.json"],
        1,
        "--data {out}/faces: no such folder",
    ),
    (
        "train-tagger-missing-folder",
        ["train-tagger", "{out}/train", "{faces}", "--out", "{out}/new/t"],
        1,
        "train: no such folder",
    ),
    ("tags-of-a-checkpoint", ["tags", "{run}/checkpoint.pt"], 1, "export it first"),
    ("unknown-command", ["paint"], 2, "invalid choice: 'paint'"),
]


@pytest.mark.slow  # one fresh process per case, most of them importing torch
@pytest.mark.parametrize(("args", "code", "sentence"), [pytest.param(*case[1:], id=case[0]) for case in MISTAKES])
def test_each_mistake_gets_one_sentence_and_changes_nothing_on_disk_when_made(work, tmp_path, args, code, sentence):
    if "cuda" in args:
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    names = {k: str(v) for k, v in work.items() if isinstance(v, Path)} | {"out": str(tmp_path)}
    before = snapshot(tmp_path, work["root"])
    done = mangagan(*[a.format(**names) for a in args])
    assert done.returncode == code, done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("mangagan")]
    assert len(said) == 1 and sentence.format(**names) in said[0], done.stderr
    assert "Traceback" not in done.stderr and not done.stdout.strip()
    assert snapshot(tmp_path, work["root"]) == before


@pytest.mark.slow
def test_training_says_what_it_does_at_once_in_whole_lines_when_run_into_a_log(work):
    trained = work["trained"]
    err = trained.stderr
    assert "\r" not in err and "INFO" not in err
    lines = err.splitlines()
    assert lines[0].startswith("training on CPU (1 of ")  # the threads used, not the cores there are
    assert any(line.startswith("training 40 faces at 32 px on CPU (1 of ") for line in lines)
    assert any(line.startswith("step 1/2 done") for line in lines)
    assert any(line.startswith("epoch 1/1 step 2/2 |") for line in lines)
    assert (trained.stdout + err).count("finished at step") == 1


@pytest.mark.slow
def test_output_folders_are_created_when_missing_and_a_png_restores_at_its_exported_size(tiny_weights, tmp_path):
    grid = ok("generate", str(tiny_weights), "-n", "4", "-o", str(tmp_path / "out" / "grid.png"))
    assert "wrote 4 faces" in grid.stdout and (tmp_path / "out" / "grid.png").is_file()
    ok(
        "generate",
        str(tiny_weights),
        "-n",
        "1",
        "--seed",
        "3",
        "--sliders",
        "1.5,0,-2",
        "--scale",
        "4",
        "--smooth",
        "-o",
        str(tmp_path / "made" / "face.png"),
    )
    again = ok(
        "restore",
        str(tmp_path / "made" / "face.png"),
        "-o",
        str(tmp_path / "again" / "face.png"),
        "--weights",
        str(tiny_weights),
    )
    assert "4x Lanczos" in again.stdout
    with Image.open(tmp_path / "made" / "face.png") as made, Image.open(tmp_path / "again" / "face.png") as back:
        assert made.size == back.size == (128, 128) and made.tobytes() == back.tobytes()
        assert "Sliders: +1.50, +0.00, -2.00, Enlarged: 4x Lanczos" in made.text["parameters"]
    ok("synth-sheet", str(tmp_path / "sheets" / "s.png"), "--count", "4", "--size", "16")
    assert (tmp_path / "sheets" / "s.png").is_file()


@pytest.mark.slow
def test_three_exports_of_one_checkpoint_give_one_sha256_and_an_earlier_png_restores_after_them(work, tmp_path):
    weights = tmp_path / "weights" / "tiny"
    ok("export", str(work["run"]), str(weights))
    ok(
        "generate",
        str(weights) + ".safetensors",
        "-n",
        "1",
        "--seed",
        "2",
        "--scale",
        "2",
        "-o",
        str(tmp_path / "face.png"),
    )
    digests = {json.loads(weights.with_suffix(".json").read_text())["sha256"]}
    for _ in range(2):
        ok("export", str(work["run"]), str(weights))
        digests.add(json.loads(weights.with_suffix(".json").read_text())["sha256"])
    assert len(digests) == 1, digests
    again = ok(
        "restore",
        str(tmp_path / "face.png"),
        "-o",
        str(tmp_path / "again.png"),
        "--weights",
        str(weights) + ".safetensors",
    )
    assert "(64×64, 2x nearest)" in again.stdout


@pytest.mark.slow
def test_a_cropped_dataset_is_reviewed_and_exported_without_the_window_when_kept_by_likelihood(work, tmp_path):
    import shutil

    dataset = tmp_path / "dataset"
    shutil.copytree(work["dataset"], dataset)
    status = ok("review", str(dataset))
    assert "2 faces: 0 kept, 0 rejected, 2 unreviewed" in status.stdout and "--keep-all" in status.stdout
    decided = ok("review", str(dataset), "--keep-above", "0.0")
    assert "kept 2 and rejected 0 unreviewed faces" in decided.stdout
    exported = ok("review-export", str(dataset), str(tmp_path / "kept"))
    assert "exported 2 kept crops" in exported.stdout and len(list((tmp_path / "kept").glob("*.png"))) == 2


@pytest.mark.slow
def test_tags_lists_every_tag_with_its_group_and_aliases_when_asked(tiny_weights):
    listed = ok("tags", str(tiny_weights))
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert ["Hair", "colour", "blonde", "blonde_hair", "blond_hair"] in rows
    assert ["Tags", "cat_ears", "cat_ears", "animal_ears,", "cat_ear"] in rows
    assert listed.stdout.startswith(f"38 tags of the model {tiny_weights}")
    assert ok("tags").stdout.startswith("38 tags of the app's default vocabulary")


def test_help_names_the_files_a_command_really_writes_when_asked():
    assert "labels.u8" in ok("pack", "--help").stdout and "labels.npy" not in ok("pack", "--help").stdout
    assert ok("--help").stdout.count("Exit status") == 1


def test_a_traceback_is_shown_only_when_asked_with_v(tmp_path):
    args = ["restore", str(tmp_path / "face.png"), "-o", str(tmp_path / "again.png")]
    quiet, verbose = mangagan(*args), mangagan("-v", *args)
    assert quiet.returncode == verbose.returncode == 1
    assert "Traceback" not in quiet.stderr and "Traceback" in verbose.stderr
    assert subprocess.run(
        [sys.executable, "-m", "mangagan_app.cli", "--version"], capture_output=True, text=True, timeout=60
    ).stdout.startswith("mangagan ")
