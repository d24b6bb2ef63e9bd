"""Faults: damaged checkpoints, a full disk, a read-only dataset folder, fuzzed images,
a review killed mid-way. Real files, a real tiny model, the real detector."""

import dataclasses
import errno
import hashlib
import io
import logging
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mangagan_app.config import CropConfig, TrainingConfig
from mangagan_app.core.attributes import VOCABULARY
from mangagan_app.core.catalogue import Catalogue, FaceResult, SourceResult
from mangagan_app.core.cropping.pipeline import crop_sources
from mangagan_app.core.face_recipe import RECIPE_CHUNK, FaceRecipe, RecipeError, png_bytes, read_png_recipe
from mangagan_app.core.files import atomic_write_bytes
from mangagan_app.core.sketchbook import render_face, sample_attributes
from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.ml.checkpoint import export_run
from mangagan_app.ml.resume_state import CHECKPOINT, PREVIOUS_CHECKPOINT, RunFolderError, load_resume_state
from mangagan_app.ml.trainer import train


# ---- mounts (root only; skipped elsewhere) ------------------------------------------------
def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount not permitted here: {done.stderr.strip()}")


def _tmpfs(folder: Path, size: str):
    folder.mkdir()
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs: writes beyond that fail with ENOSPC."""
    yield from _tmpfs(tmp_path / "disk", "64k")


@pytest.fixture
def catalogue_disk(tmp_path):
    """A 512 KiB tmpfs: room for a catalogue to start, then full."""
    yield from _tmpfs(tmp_path / "disk", "512k")


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder (with a dataset subfolder) seen through a read-only bind mount (root ignores chmod)."""
    real, view = tmp_path / "real", tmp_path / "ro"
    (real / "dataset").mkdir(parents=True)
    view.mkdir()
    _mount("--bind", str(real), str(view))
    try:
        _mount("-o", "remount,ro,bind", str(view))
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


# ---- a tiny run with two checkpoints --------------------------------------------------------
@pytest.fixture(scope="module")
def run_with_two_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults_run")
    write_sketchbook(root / "faces", 32, size=32, seed=2, workers=1)
    cfg = TrainingConfig(
        data=str(root / "faces"),
        resolution=32,
        width=4,
        batch=16,
        epochs=1,
        tick_steps=1,
        preview_steps=1000,
        checkpoint_minutes=60.0,
        checkpoint_steps=1,
        threads=1,
    )
    train(cfg, root / "run")
    return cfg, root / "run"


def _copy_run(run: Path, to: Path) -> Path:
    to.mkdir()
    for p in run.iterdir():
        if p.is_file():
            (to / p.name).write_bytes(p.read_bytes())
    return to


@pytest.mark.parametrize("damage", ["truncated", "corrupted", "empty"])
def test_resume_uses_the_previous_checkpoint_and_says_why_when_the_newest_is_damaged(
    run_with_two_checkpoints, tmp_path, caplog, damage
):
    cfg, run = run_with_two_checkpoints
    run = _copy_run(run, tmp_path / "run")
    newest = run / CHECKPOINT
    data = newest.read_bytes()
    prev_step = torch.load(run / PREVIOUS_CHECKPOINT, weights_only=True)["step"]
    steps_per_epoch = torch.load(newest, weights_only=True)["step"]  # the run trained one epoch
    newest.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "empty": b"",
            "corrupted": data[:100] + bytes(b ^ 0x5A for b in data[100:2000]) + data[2000:],
        }[damage]
    )
    with caplog.at_level(logging.WARNING):
        state = load_resume_state(run)
    assert state["step"] == prev_step
    assert "using the previous checkpoint" in caplog.text and str(newest) in caplog.text
    result = train(dataclasses.replace(cfg, epochs=2), run, resume=True)
    assert result.step == 2 * steps_per_epoch


def test_resume_is_refused_naming_both_files_when_both_checkpoints_are_damaged(run_with_two_checkpoints, tmp_path):
    _, run = run_with_two_checkpoints
    run = _copy_run(run, tmp_path / "run")
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        (run / name).write_bytes((run / name).read_bytes()[:300])
    with pytest.raises(RunFolderError) as err:
        load_resume_state(run)
    assert str(run / CHECKPOINT) in str(err.value) and str(run / PREVIOUS_CHECKPOINT) in str(err.value)


# ---- disk full ---------------------------------------------------------------------------
def test_atomic_write_raises_and_keeps_the_old_file_when_the_disk_is_full(small_disk):
    target = small_disk / "settings.json"
    target.write_bytes(b"old contents")
    with pytest.raises(OSError) as err:
        atomic_write_bytes(target, os.urandom(200_000))
    assert err.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in small_disk.iterdir()] == ["settings.json"]  # no half-written temporary left


def test_weights_export_fails_cleanly_and_keeps_the_old_model_when_the_disk_is_full(
    run_with_two_checkpoints, small_disk
):
    _, run = run_with_two_checkpoints
    old, old_card = small_disk / "model.safetensors", small_disk / "model.json"
    old.write_bytes(b"the previous model")
    old_card.write_text('{"the previous": "card"}')
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * 40_000)  # the weights (~70 KB) no longer fit
    with pytest.raises(OSError) as err:
        export_run(run, small_disk / "model")
    assert err.value.errno == errno.ENOSPC
    assert old.read_bytes() == b"the previous model" and old_card.read_text() == '{"the previous": "card"}'
    assert sorted(p.name for p in small_disk.iterdir()) == ["ballast", "model.json", "model.safetensors"]


def _face(idx: int) -> FaceResult:
    return FaceResult(
        idx=idx,
        box=(1, 2, 3, 4),
        square=(0, 0, 8, 8),
        likelihood=0.5,
        hair_rgb=(1, 2, 3),
        eye_rgb=(1, 2, 3),
        skin_rgb=(1, 2, 3),
        crop_file=f"crops/{idx}.png",
        crop_size=64,
        tags=("blue_hair",) * 20,
        tags_source="detector",
        dhash=idx * 7919,
    )


def test_catalogue_keeps_every_committed_source_when_the_disk_fills_during_a_crop_run(catalogue_disk):
    small_disk = catalogue_disk
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * 64_000)
    committed = 0
    with Catalogue(small_disk / "ds") as cat:
        jobs = cat.plan([f"/nowhere/{i}.png" for i in range(200)])
        with pytest.raises(sqlite3.OperationalError, match="full"):
            for job in jobs:
                cat.record(
                    SourceResult(
                        job.source_id,
                        job.path,
                        1,
                        1,
                        "0" * 64,
                        9,
                        9,
                        None,
                        tuple(_face(job.source_id * 100 + k) for k in range(20)),
                    )
                )
                committed += 1
    assert committed > 0
    ballast.unlink()  # the user frees some space (SQLite needs a little even to open: its WAL index)
    with Catalogue(small_disk / "ds") as cat:
        assert cat.integrity() == "ok"
        assert cat.source_status()["done"] == committed
        assert len(cat.face_ids()) == 20 * committed


# ---- read-only dataset folder -------------------------------------------------------------
def _sources(folder: Path, count: int = 2) -> dict[Path, str]:
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(count):
        canvas = Image.new("RGB", (200, 200), (235, 230, 220))
        canvas.paste(render_face(sample_attributes(rng), rng, 160), (20, 20))
        canvas.save(folder / f"page{i}.png")
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_cropping_into_a_read_only_folder_is_refused_naming_it_and_sources_are_untouched(read_only_dir, tmp_path):
    before = _sources(tmp_path / "src")
    dataset = read_only_dir / "dataset"
    with pytest.raises(OSError, match="read-only") as err:
        crop_sources([tmp_path / "src"], dataset, CropConfig(workers=1))
    assert str(dataset) in str(err.value)
    with pytest.raises(OSError, match="Read-only file system"):
        crop_sources([tmp_path / "src"], read_only_dir / "new_dataset", CropConfig(workers=1))
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before} == before
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "mangagan_app",
            "crop",
            str(tmp_path / "src"),
            "--dataset",
            str(dataset),
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert "read-only" in cli.stderr and str(dataset) in cli.stderr


# ---- fuzzed images --------------------------------------------------------------------------
def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` (a decompression bomb's first bytes)."""
    buf = io.BytesIO()
    Image.new("1", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def _encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _fuzz_files(folder: Path, mutations: int, seed: int = 0) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """({name: bytes} that must fail, {name: bytes} in odd but valid modes)."""
    rng = np.random.default_rng(seed)
    face = Image.new("RGB", (200, 200), (235, 230, 220))
    face.paste(render_face(sample_attributes(rng), rng, 160), (20, 20))
    png, jpeg = _encoded(face, "PNG"), _encoded(face, "JPEG", quality=90)
    bad = {
        "random.png": rng.bytes(3000),
        "zero.png": b"",
        "text.jpg": b"hello, not a picture\n",
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "header_only.png": png[:40],
        "bomb.png": _png_with_size(30_000, 30_000),
        "bomb_just_over.png": _png_with_size(9_000, 8_000),
        "tiny_1x1.png": _encoded(Image.new("RGB", (1, 1)), "PNG"),
    }
    odd = {
        "mode_1.png": _encoded(face.convert("1"), "PNG"),
        "mode_L16.png": _encoded(face.convert("I;16"), "PNG"),
        "mode_LA.png": _encoded(face.convert("LA"), "PNG"),
        "mode_P.gif": _encoded(face.convert("P"), "GIF"),
        "mode_P_transparent.png": _encoded(face.convert("P"), "PNG", transparency=0),
        "mode_CMYK.jpg": _encoded(face.convert("CMYK"), "JPEG"),
        "mode_F.tiff": _encoded(face.convert("F"), "TIFF"),
        "mode_RGBA.webp": _encoded(face.convert("RGBA"), "WEBP"),
    }
    for i in range(mutations):  # bit flips, cuts and splices of a good PNG: anything may come out
        data = bytearray(png)
        kind = i % 3
        if kind == 0:
            for pos in rng.integers(8, len(data), size=int(rng.integers(1, 20))):
                data[pos] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            del data[int(rng.integers(8, len(data))) :]
        else:
            at = int(rng.integers(8, len(data)))
            data[at:at] = rng.bytes(int(rng.integers(1, 200)))
        odd[f"mutant_{i:02d}.png"] = bytes(data)
    for name, data in {**bad, **odd}.items():
        (folder / name).write_bytes(data)
    return bad, odd


def test_fuzzed_images_become_error_rows_and_the_run_goes_on_when_cropped(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    bad, odd = _fuzz_files(src, mutations=12)
    good = _sources(tmp_path / "good", count=1)
    before = {p: p.read_bytes() for p in src.iterdir()}
    summary = crop_sources([src, *good], tmp_path / "ds", CropConfig(workers=1, max_pixels=64_000_000))
    assert summary.processed == len(bad) + len(odd) + 1
    with Catalogue(tmp_path / "ds") as cat:
        errors = {Path(path).name: reason for path, reason in cat.errors()}
        assert set(bad) <= set(errors), set(bad) - set(errors)
        assert all(reason and len(reason) < 300 for reason in errors.values())
        assert "pixels" in errors["bomb.png"] or "bomb" in errors["bomb.png"].lower()
        status = cat.source_status()
        assert status["pending"] == 0 and status["done"] + status["error"] == summary.processed
        valid_odd = [n for n in odd if not n.startswith("mutant")]
        assert not set(valid_odd) & set(errors), {n: errors[n] for n in set(valid_odd) & set(errors)}
        assert len(cat.face_ids()) >= 1  # the good page was still cropped
    assert {p: p.read_bytes() for p in src.iterdir()} == before


def _recipe_png(recipe_text: str | None = None) -> bytes:
    recipe = FaceRecipe(noise=np.arange(8, dtype=np.float32), condition=np.zeros(VOCABULARY.dim), seed=3)
    data = png_bytes(Image.new("RGB", (16, 16), (200, 100, 50)), recipe)
    if recipe_text is None:
        return data
    image = Image.open(io.BytesIO(data))
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(RECIPE_CHUNK, recipe_text)
    return _encoded(image, "PNG", pnginfo=info)


DAMAGED_RECIPES = [
    "",
    "null",
    "[1, 2]",
    '"text"',
    "{",
    '{"format": "x"}',
    '{"format": 99}',
    '{"noise_f32le": 5, "condition": []}',
    '{"noise_f32le": "!!!", "condition": [1]}',
    '{"noise_f32le": "AAA=", "condition": [1]}',
    '{"noise_f32le": "", "condition": {"a": 1}}',
    '{"noise_f32le": "", "condition": [[1], [1, 2]]}',
    '{"noise_f32le": "", "condition": [], "seed": 1e999}',
    '{"noise_f32le": "", "condition": [], "sliders": {"a": "b"}}',
    '{"noise_f32le": "", "condition": [], "truncation": "high"}',
    "[" * 100_000 + "]" * 100_000,
]


def test_open_png_to_restore_gives_a_recipe_error_never_a_crash_when_the_file_is_fuzzed(tmp_path):
    assert read_png_recipe(_write(tmp_path / "good.png", _recipe_png())).seed == 3
    bad, odd = _fuzz_files(tmp_path, mutations=0)
    cases = {**bad, **odd}
    cases.update({f"damaged_recipe_{i}.png": _recipe_png(text) for i, text in enumerate(DAMAGED_RECIPES)})
    rng = np.random.default_rng(11)
    good = _recipe_png()
    for i in range(150):
        data = bytearray(good)
        for pos in rng.integers(8, len(data), size=int(rng.integers(1, 6))):
            data[pos] = int(rng.integers(256))
        cases[f"mutant_{i:03d}.png"] = bytes(data[: int(rng.integers(len(data) // 2, len(data) + 1))])
    restored = 0
    for name, data in cases.items():
        path = _write(tmp_path / name, data)
        try:
            recipe = read_png_recipe(path)
        except RecipeError as exc:
            assert name in str(exc), str(exc)
        else:  # damaged but well-formed parameters may parse; the Generate tab's shape check refuses them
            assert isinstance(recipe, FaceRecipe) and not (name in bad or name in odd), name
            restored += 1
    assert restored < len(cases) // 2


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---- kill -9 during review ---------------------------------------------------------------
REVIEWER = """
import sys
from mangagan_app.core.catalogue import Catalogue
with Catalogue(sys.argv[1]) as cat:
    ids = cat.face_ids(order="source")
    for n, face_id in enumerate(ids):
        cat.set_decisions({face_id: "keep" if n % 2 else "reject"})  # what the Dataset tab does per key press
        print(face_id, flush=True)
"""


def test_review_decisions_committed_before_a_kill_survive_when_the_reviewer_is_killed(tmp_path):
    dataset = tmp_path / "ds"
    with Catalogue(dataset) as cat:
        for job in cat.plan([f"/nowhere/{i}.png" for i in range(20)]):
            cat.record(
                SourceResult(
                    job.source_id,
                    job.path,
                    1,
                    1,
                    "0" * 64,
                    9,
                    9,
                    None,
                    tuple(_face(job.source_id * 100 + k) for k in range(20)),
                )
            )
        order = cat.face_ids(order="source")
    proc = subprocess.Popen([sys.executable, "-c", REVIEWER, str(dataset)], stdout=subprocess.PIPE, text=True)
    confirmed = []
    for line in proc.stdout:
        confirmed.append(int(line))
        if len(confirmed) == 150:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    confirmed += [int(line) for line in proc.stdout.read().split()]  # printed before the kill landed
    with Catalogue(dataset) as cat:
        assert cat.integrity() == "ok"
        faces = cat.faces(order)
        decided = [i for i in order if faces[i].decision != "unreviewed"]
        assert set(confirmed) <= set(decided)
        assert decided == order[: len(decided)] and len(decided) < len(order)  # killed mid-way, no gaps
        for n, face_id in enumerate(decided):
            assert faces[face_id].decision == ("keep" if n % 2 else "reject")
