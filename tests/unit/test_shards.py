"""Packed uint8 shards: the same batches and training as faces in memory, from real sketchbook files."""

import json
import subprocess
import sys

import pytest
import torch

from mangagan_app.config import TrainingConfig
from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.ml.dataset import load_face_folder
from mangagan_app.ml.resume_state import load_resume_state
from mangagan_app.ml.shards import MANIFEST, ShardSet, pack_faces, shard_name
from mangagan_app.ml.trainer import train

SIZE = 32


@pytest.fixture(scope="module")
def sketchbook(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sketchbook")
    write_sketchbook(folder, 40, size=SIZE, seed=8, workers=1)
    (folder / "000005.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    (folder / "000006.txt").unlink()  # untagged: its mask is all zeros
    return folder


@pytest.fixture(scope="module")
def packed(sketchbook, tmp_path_factory):
    out = tmp_path_factory.mktemp("packed") / "shards"
    result = pack_faces(sketchbook, out, SIZE, shard_rows=7, workers=1)  # 39 faces: 6 shards, the last short
    assert (result.faces, result.skipped, result.stopped) == (39, 1, False)
    return out


def test_shards_give_the_batches_and_fake_conditions_of_the_faces_in_memory_when_packed(sketchbook, packed):
    memory, streamed = load_face_folder(sketchbook, SIZE), ShardSet(packed)
    assert len(streamed) == len(memory) == 39 and streamed.resolution == SIZE
    indices = torch.tensor([38, 0, 13, 7, 6, 13, 20, 5])  # across shards, unsorted, one repeated
    flips = torch.tensor([True, False, True, False, True, False, True, True])
    for ours, theirs in zip(streamed.batch(indices, flips), memory.batch(indices, flips), strict=True):
        assert torch.equal(ours, theirs)
    assert torch.equal(
        streamed.sample_conditions(50, torch.Generator().manual_seed(3)),
        memory.sample_conditions(50, torch.Generator().manual_seed(3)),
    )
    manifest = json.loads((packed / MANIFEST).read_text())
    assert [s["count"] for s in manifest["shards"]] == [7, 7, 7, 7, 7, 4]
    assert manifest["skipped"][0]["file"].endswith("000005.png")
    assert {**streamed.summary(), "shards": None} == {**memory.summary(), "shards": None}


def test_training_on_a_shard_folder_gives_the_weights_of_training_in_memory_when_the_faces_are_the_same(
    sketchbook, packed, tmp_path
):
    settings = dict(
        resolution=SIZE,
        width=4,
        batch=8,
        epochs=1,
        tick_steps=2,
        preview_steps=100,
        checkpoint_minutes=60.0,
        threads=1,
        precision="fp32",
    )
    train(TrainingConfig(data=str(packed), **settings), tmp_path / "streamed")
    train(TrainingConfig(data=str(sketchbook), **settings), tmp_path / "memory")
    ours, theirs = load_resume_state(tmp_path / "streamed"), load_resume_state(tmp_path / "memory")
    assert ours["step"] == theirs["step"] == 4
    for name, tensor in theirs["G_ema"].items():
        assert torch.equal(ours["G_ema"][name], tensor), name


def test_a_truncated_shard_is_refused_naming_it_when_opened(packed, tmp_path):
    import shutil

    copy = shutil.copytree(packed, tmp_path / "copy")
    damaged = copy / shard_name(2)
    damaged.write_bytes(damaged.read_bytes()[:-100])
    with pytest.raises(ValueError, match=shard_name(2)):
        ShardSet(copy)


def test_packing_stops_and_leaves_no_files_when_asked_and_refuses_an_existing_pack(sketchbook, packed, tmp_path):
    out = tmp_path / "stopped"
    result = pack_faces(sketchbook, out, SIZE, shard_rows=7, workers=1, should_stop=lambda: True)
    assert result.stopped and list(out.iterdir()) == []
    with pytest.raises(FileExistsError, match="already holds packed shards"):
        pack_faces(sketchbook, packed, SIZE, workers=1)


def test_pack_command_writes_a_readable_shard_folder_when_run_from_the_command_line(sketchbook, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mangagan_app",
            "pack",
            str(sketchbook),
            str(tmp_path / "p"),
            "--res",
            str(SIZE),
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "packed 39 faces (1 skipped)" in proc.stdout
    assert len(ShardSet(tmp_path / "p")) == 39
