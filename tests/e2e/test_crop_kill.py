"""Ctrl+C and ``kill -9`` in the middle of ``mangagan crop``: no committed row lost, the re-run finishes."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from mangagan_app.core.catalogue import Catalogue
from mangagan_app.core.sketchbook import render_face, sample_attributes

IMAGES = 16


def _done_count(db_path) -> int:
    if not db_path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM sources WHERE status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def _start_run(tmp_path):
    src, dataset = tmp_path / "src", tmp_path / "ds"
    src.mkdir()
    rng = np.random.default_rng(7)
    for i in range(IMAGES):
        canvas = Image.new("RGB", (200, 200), (235, 230, 220))
        canvas.paste(render_face(sample_attributes(rng), rng, 160), (20, 20))
        canvas.save(src / f"img{i:02d}.png")
    command = [sys.executable, "-m", "mangagan_app", "crop", str(src), "--dataset", str(dataset), "--workers", "1"]
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while _done_count(dataset / "catalogue.sqlite") < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    return proc, command, dataset


@pytest.mark.slow
def test_ctrl_c_stops_crop_run_cleanly_when_pressed_mid_run(tmp_path):
    proc, _, dataset = _start_run(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C in a terminal sends: the whole process group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped early" in out
    with Catalogue(dataset) as cat:
        status = cat.source_status()
        assert status["done"] >= 2 and status["done"] + status["pending"] == IMAGES and status["error"] == 0


@pytest.mark.slow
def test_killed_crop_run_keeps_committed_rows_when_rerun(tmp_path):
    proc, command, dataset = _start_run(tmp_path)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its detector process, mid-run
    proc.communicate()
    with Catalogue(dataset) as cat:
        status = cat.source_status()
        assert 2 <= status["done"] < IMAGES, status
        done_faces = cat.faces(cat.face_ids())
        assert all((dataset / f.crop_file).is_file() for f in done_faces.values())
        cat.set_decisions({next(iter(done_faces)): "keep"})

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    with Catalogue(dataset) as cat:
        assert cat.source_status() == {"pending": 0, "done": IMAGES, "error": 0}
        assert cat.decision_counts()["keep"] == 1  # the review made before the re-run survives
        faces = cat.faces(cat.face_ids())
        assert len({f.source_id for f in faces.values()}) == IMAGES
        assert all((dataset / f.crop_file).is_file() for f in faces.values())
        assert cat.integrity() == "ok"
