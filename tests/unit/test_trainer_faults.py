"""What the trainer cleans up and keeps after a kill or a damaged checkpoint."""

import pytest
import torch

from mangagan_app.config import TrainingConfig
from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.ml.dataset import load_face_folder
from mangagan_app.ml.device import DeviceUnavailableError
from mangagan_app.ml.resume_state import CHECKPOINT, PREVIOUS_CHECKPOINT
from mangagan_app.ml.trainer import RunFinishedError, train

SIZE = 32


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    write_sketchbook(folder, 32, size=SIZE, seed=4, workers=1)
    return load_face_folder(folder, SIZE)


def config(**overrides) -> TrainingConfig:
    settings = dict(
        data="sketchbook",
        resolution=SIZE,
        width=4,
        batch=16,
        epochs=1,
        tick_steps=1,
        preview_steps=1000,
        checkpoint_minutes=60.0,
        checkpoint_steps=1,
        threads=1,
    )
    return TrainingConfig(**{**settings, **overrides})


def test_temporaries_left_by_a_killed_write_are_removed_when_training_starts(faces, tmp_path):
    (tmp_path / "previews").mkdir()
    stale = [tmp_path / f".{CHECKPOINT}.k1ll3d.tmp", tmp_path / "previews" / ".step_0000500.png.x9.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 4096)
    keep = tmp_path / "notes.tmp"  # not one of ours (ours start with a dot)
    keep.write_text("mine")
    train(config(), tmp_path, faces=faces)
    assert not any(p.exists() for p in stale)
    assert keep.read_text() == "mine"


def test_fallback_checkpoint_is_kept_when_the_run_resumed_from_it_and_saves_again(faces, tmp_path):
    train(config(), tmp_path, faces=faces)  # two steps, a checkpoint after each
    good_step = torch.load(tmp_path / PREVIOUS_CHECKPOINT, weights_only=True)["step"]
    damaged = tmp_path / CHECKPOINT
    damaged.write_bytes(damaged.read_bytes()[:1000])  # truncated, as by a full disk

    calls = []
    result = train(
        config(epochs=2, checkpoint_steps=0),
        tmp_path,
        faces=faces,
        resume=True,
        should_stop=lambda: calls.append(1) or len(calls) > 1,
    )  # one step, then one save
    assert (result.step, result.stopped) == (good_step + 1, True)
    # Before the fix the damaged file became checkpoint.prev.pt at this save.
    assert torch.load(tmp_path / PREVIOUS_CHECKPOINT, weights_only=True)["step"] == good_step
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == good_step + 1


def test_a_failed_run_leaves_no_empty_folder_behind_when_it_cannot_start(faces, tmp_path):
    run = tmp_path / "runs" / "new"
    with pytest.raises(FileNotFoundError):
        train(config(data=str(tmp_path / "missing")), run)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError, match="no CUDA device here"):
            train(config(device="cuda"), run, faces=faces)
    assert list(tmp_path.iterdir()) == []


def test_progress_says_when_training_starts_and_after_the_first_step_with_the_threads_used(faces, tmp_path):
    seen = []
    train(config(checkpoint_steps=0, tick_steps=25), tmp_path, faces=faces, progress=seen.append)
    assert [p.phase for p in seen] == ["started", "first_step", "training"]  # 2 steps: the last one ticks
    assert seen[0].detail.startswith("32 faces at 32 px on CPU (1 of ") and seen[0].total_steps == 2
    assert seen[1].step == 1 and seen[1].eta_seconds >= 0


def test_resuming_a_finished_run_is_refused_saying_so_when_no_epoch_is_left(faces, tmp_path):
    train(config(), tmp_path, faces=faces)
    before = (tmp_path / CHECKPOINT).read_bytes()
    with pytest.raises(RunFinishedError, match="has finished"):
        train(config(), tmp_path, faces=faces, resume=True)
    assert (tmp_path / CHECKPOINT).read_bytes() == before
    assert train(config(epochs=2), tmp_path, faces=faces, resume=True).step == 4
