"""Data-parallel training: two CPU processes (gloo, started by torchrun) against one process."""

import os
import subprocess
import sys

import pytest
import torch

from mangagan_app.config import TrainingConfig
from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.ml.checkpoint import export_run, load_generator
from mangagan_app.ml.resume_state import load_resume_state
from mangagan_app.ml.trainer import train

SIZE = 32
BATCH = 16


@pytest.mark.slow
def test_two_processes_match_one_process_when_trained_one_step_on_the_same_global_batch(tmp_path):
    faces = tmp_path / "faces"
    write_sketchbook(faces, BATCH, size=SIZE, seed=11, workers=1)  # one batch: one step per epoch
    settings = [
        "--res",
        str(SIZE),
        "--width",
        "4",
        "--batch",
        str(BATCH),
        "--epochs",
        "1",
        "--seed",
        "2",
        "--threads",
        "1",
        "--precision",
        "fp32",
    ]
    # torchrun's variables must come from torchrun alone, not from whatever launched the tests.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "mangagan_app",
            "train",
            str(faces),
            str(tmp_path / "ddp"),
            *settings,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    train(
        TrainingConfig(
            data=str(faces), resolution=SIZE, width=4, batch=BATCH, epochs=1, seed=2, threads=1, precision="fp32"
        ),
        tmp_path / "single",
    )

    two, one = load_resume_state(tmp_path / "ddp"), load_resume_state(tmp_path / "single")
    assert (two["step"], one["step"]) == (1, 1)
    for net in ("G", "D", "G_ema"):
        for name, tensor in one[net].items():
            # After one Adam step every weight has moved by ~lr; a wrong batch, noise or
            # BatchNorm statistic moves some by far more than this tolerance.
            torch.testing.assert_close(two[net][name], tensor, rtol=1e-4, atol=1e-5, msg=f"{net}.{name}")
    # Rank 0 alone writes: one stats line, not one per process.
    assert len((tmp_path / "ddp" / "stats.jsonl").read_text().splitlines()) == 1

    weights, _ = export_run(tmp_path / "ddp", tmp_path / "weights" / "ddp")
    generator, card = load_generator(weights)
    assert card["training"]["steps"] == 1
    assert generator(torch.zeros(2, generator.arch.z_dim), torch.zeros(2, generator.arch.cond_dim)).shape == (
        2,
        3,
        SIZE,
        SIZE,
    )
