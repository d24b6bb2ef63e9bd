"""``mangagan train``: Ctrl+C saves and stops, ``--resume`` carries on from the same step."""

import json
import signal
import subprocess
import sys
import time

import pytest

from mangagan_app.core.sketchbook.dataset import write_sketchbook


@pytest.mark.slow  # two interpreter + torch start-ups and real training: ~15-30 s
def test_ctrl_c_saves_and_stops_and_resume_finishes_when_training_from_the_cli(tmp_path):
    data, run = tmp_path / "faces", tmp_path / "run"
    write_sketchbook(data, 64, size=32, seed=11, workers=1)
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
        "16",
        "--threads",
        "1",
    ]
    proc = subprocess.Popen([*args, "--epochs", "500"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stats = run / "stats.jsonl"
    deadline = time.monotonic() + 90
    while not (stats.exists() and stats.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped at step" in out and "--resume" in out
    state_step = int(out.split("stopped at step ")[1].split("/")[0])
    assert 0 < state_step < 500 * 4
    done_epochs = state_step // 4

    resumed = subprocess.run(
        [*args, "--resume", "--epochs", str(done_epochs + 1)], capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"finished at step {(done_epochs + 1) * 4}/{(done_epochs + 1) * 4}" in resumed.stdout
    assert json.loads((run / "config.json").read_text())["epochs"] == done_epochs + 1


@pytest.mark.slow  # three interpreter + torch start-ups: ~15-30 s
def test_a_film_run_fine_tunes_an_earlier_run_and_exports_its_total_steps_from_the_cli(tmp_path):
    data = tmp_path / "faces"
    write_sketchbook(data, 32, size=32, seed=12, workers=1)
    common = ["--res", "32", "--width", "4", "--batch", "16", "--threads", "1", "--epochs", "1"]

    def mangagan(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "mangagan_app", *args], capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stderr
        return done

    mangagan("train", str(data), str(tmp_path / "first"), *common)
    mangagan(
        "train",
        str(data),
        str(tmp_path / "second"),
        *common,
        "--init-from",
        str(tmp_path / "first"),
        "--g-conditioning",
        "film",
        "--lr-decay-steps",
        "2",
        "--lr",
        "1e-4",
        "--aux-weight",
        "2",
    )
    config = json.loads((tmp_path / "second" / "config.json").read_text())
    assert (config["g_conditioning"], config["lr_decay_steps"], config["aux_weight"]) == ("film", 2, 2.0)
    assert config["lr_g"] == config["lr_d"] == 1e-4
    exported = mangagan("export", str(tmp_path / "second"), str(tmp_path / "model"))
    assert f"steps 4 (2 of them in {tmp_path / 'first'})" in exported.stdout
