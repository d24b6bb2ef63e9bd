"""A failed run says so: a warning in words when D has won or G has collapsed, none when healthy."""

import json

import numpy as np
import pytest

from mangagan_app.cli import _train_progress_printer
from mangagan_app.config import TrainingConfig
from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.ml.dataset import load_face_folder
from mangagan_app.ml.health import COLLAPSED, D_WON, HealthMonitor, preview_diversity
from mangagan_app.ml.trainer import TrainProgress, train

SIZE = 32


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("health_faces")
    write_sketchbook(folder, 128, size=SIZE, seed=11, workers=1)
    return load_face_folder(folder, SIZE)


def run(faces, folder, **overrides) -> tuple[list[str], list[dict]]:
    cfg = TrainingConfig(
        data=faces.source,
        resolution=SIZE,
        width=8,
        batch=16,
        epochs=40,
        tick_steps=5,
        preview_steps=1000,
        threads=1,
        checkpoint_minutes=60.0,
        **overrides,
    )
    warnings: list[str] = []
    train(cfg, folder, faces=faces, progress=lambda p: warnings.append(p.warning) if p.warning else None)
    records = [json.loads(line) for line in (folder / "stats.jsonl").read_text(encoding="utf-8").splitlines()]
    return warnings, records


def test_training_warns_that_d_has_won_when_g_cannot_learn(faces, tmp_path):
    warnings, records = run(faces, tmp_path, lr_g=0.0)  # a G that never learns: D must win
    assert len(warnings) == 1 and "discriminator has won" in warnings[0] and "--init-from" in warnings[0]
    assert [r["warning"] for r in records if "warning" in r] == warnings
    assert {"d_real", "d_fake", "r_t", "aug_p"} <= records[-1].keys()


def test_training_gives_no_warning_when_the_run_is_healthy(faces, tmp_path):
    warnings, records = run(faces, tmp_path)
    assert warnings == []
    assert min(r["d_fake"] for r in records if r["step"] > 100) > 0.05


def test_collapse_is_reported_when_faces_from_different_noise_are_alike():
    rng = np.random.default_rng(0)
    varied = rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    alike = np.repeat(varied[:1], 16, axis=0)
    alike[:, 0, 0] = rng.integers(0, 256, (16, 3))  # a pixel of difference is still a collapse
    assert preview_diversity(varied, 8) > 0.2 and preview_diversity(alike, 8) < 0.02
    monitor = HealthMonitor(warmup_steps=10)
    assert monitor.preview(20, varied, 8) is None
    warning = monitor.preview(30, alike, 8)
    assert warning.kind == COLLAPSED and "collapsed" in warning.message
    assert monitor.preview(40, alike, 8) is None  # said once, not at every preview


def test_d_won_warns_once_and_again_only_after_a_recovery():
    monitor = HealthMonitor(warmup_steps=0, ticks=3)
    won, fair = {"r_t": 1.0, "d_fake": 0.001, "d_real": 0.99}, {"r_t": 0.5, "d_fake": 0.3, "d_real": 0.7}
    kinds = [
        getattr(monitor.tick(step, means), "kind", None)
        for step, means in enumerate([won] * 5 + [fair] + [won] * 3 + [fair] * 3 + [won] * 3, start=1)
    ]
    assert kinds == [None, None, D_WON] + [None] * 9 + [None, None, D_WON]


def test_cli_progress_prints_the_warning_on_a_line_of_its_own(capsys):
    line, show = _train_progress_printer(25)
    show(
        TrainProgress(
            "training",
            300,
            1000,
            1,
            10,
            50.0,
            20.0,
            {"d_real": 1.0, "d_fake": 0.0},
            "the discriminator has won at step 300",
        )
    )
    line.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "warning: the discriminator has won at step 300"
    assert "D(real) 1.00 D(fake) 0.00" in lines[1]
