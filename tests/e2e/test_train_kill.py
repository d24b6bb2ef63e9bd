"""``kill -9`` of ``mangagan train``, once right as a checkpoint is being written and once at a
random moment: every time the next ``--resume`` starts from the last good checkpoint and the run
finishes."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.ml.resume_state import CHECKPOINT, load_resume_state

FACES, BATCH = 64, 16
STEPS_PER_EPOCH = FACES // BATCH


def _writing_checkpoint(run) -> bool:
    """True while a checkpoint's temporary file exists (``atomic_write_bytes`` names it ``.checkpoint.pt.*.tmp``)."""
    try:
        return any(e.name.startswith(f".{CHECKPOINT}.") for e in os.scandir(run))
    except FileNotFoundError:
        return False


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


@pytest.mark.slow  # three interpreter + torch start-ups on a tiny model: ~20-60 s
def test_resume_continues_from_the_last_good_checkpoint_when_training_is_killed_during_a_checkpoint_write(tmp_path):
    data, run = tmp_path / "faces", tmp_path / "run"
    write_sketchbook(data, FACES, size=32, seed=4, workers=1)
    args = [
        sys.executable,
        "-m",
        "mangagan_app",
        "train",
        str(data),
        str(run),
        "--res",
        "32",
        "--width",
        "4",
        "--batch",
        str(BATCH),
        "--threads",
        "1",
        "--preview-every",
        "100000",
        "--checkpoint-minutes",
        "0",
    ]  # a checkpoint after every step: many chances to hit one being written

    def start(*extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [*args, *extra], start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    # 1. Killed the moment a checkpoint's temporary file appears (the one before it is complete).
    proc = start("--epochs", "10000")
    deadline = time.monotonic() + 120
    while not (run / CHECKPOINT).exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    caught = False
    while time.monotonic() < deadline and proc.poll() is None:
        if _writing_checkpoint(run):
            caught = True
            break
    _kill(proc)
    assert caught, "never saw a checkpoint being written"
    first = load_resume_state(run)["step"]
    assert first >= 1

    # 2. Resumed, then killed at a random moment.
    proc = start("--resume", "--epochs", "10000")
    rng = np.random.default_rng(1)
    started = time.monotonic()
    while load_resume_state(run)["step"] <= first and time.monotonic() - started < 120 and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(float(rng.uniform(0.0, 1.0)))
    _kill(proc)
    second = load_resume_state(run)["step"]
    assert second >= first  # nothing saved before the kill is lost

    # 3. The next --resume finishes the run.
    epochs = second // STEPS_PER_EPOCH + 1
    done = subprocess.run([*args, "--resume", "--epochs", str(epochs)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"finished at step {epochs * STEPS_PER_EPOCH}/{epochs * STEPS_PER_EPOCH}" in done.stdout
