"""The plain DCGAN baseline of benchmarks/real_faces.py: it trains, records and stops as it promises."""

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.ml.dataset import load_face_folder

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "dcgan_baseline.py"


def _baseline():
    spec = importlib.util.spec_from_file_location("dcgan_baseline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("baseline") / "faces"
    write_sketchbook(folder, 64, size=64, seed=11, workers=1)
    return folder


def test_stats_and_checkpoint_written_when_stopped(faces, tmp_path):
    baseline = _baseline()
    torch.set_num_threads(1)
    steps = iter(range(51))  # should_stop is polled before each step: 50 steps, then stop
    done = baseline.train(
        load_face_folder(faces, 64).images,
        tmp_path / "run",
        width=4,
        batch=16,
        should_stop=lambda: next(steps, 50) >= 50,
    )

    assert done == 50
    lines = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [25, 50]
    assert set(lines[0]) == {"step", "time", "d_real", "d_fake", "d_loss", "g_loss", "img_per_sec"}
    assert all(0 <= line["d_real"] <= 1 and 0 <= line["d_fake"] <= 1 for line in lines)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 50
    g = baseline.load_generator(tmp_path / "run")
    with torch.no_grad():
        images = g(torch.randn(3, 100))
    assert images.shape == (3, 3, 64, 64) and images.abs().max() <= 1
    assert (tmp_path / "run" / "preview.png").is_file()


def test_refuses_run_folder_when_it_holds_a_run(faces, tmp_path):
    baseline = _baseline()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="already holds a run"):
        baseline.train(
            load_face_folder(faces, 64).images, tmp_path / "run", width=4, batch=16, should_stop=lambda: False
        )


@pytest.mark.slow
def test_saves_and_exits_cleanly_when_sent_sigint(faces, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(faces), str(run), "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (run / "stats.jsonl").exists() or not (run / "stats.jsonl").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, err
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] >= 25
    assert "stopped at step" in out
