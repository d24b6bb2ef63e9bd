"""Long operations stop when asked and leave consistent state (issue 10 item 5).

Covered elsewhere: synth (test_sketchbook), crop (test_cropping, e2e Ctrl+C, GUI Cancel in
test_faults_gui), training (test_training, e2e Ctrl+C, Train tab Stop), originality index
build (test_originality_dialog). Here: evaluation, tagger training, review export.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from mangagan_app.core.catalogue import Catalogue, FaceResult, SourceResult
from mangagan_app.core.cropping.pipeline import export_kept
from mangagan_app.ml.evaluation import EvaluationStopped, evaluate
from mangagan_app.ml.tagger import TaggerArchitecture, TaggerNet, train_tagger


def _calls_then_true(n: int):
    """A should_stop that answers False ``n`` times, then True."""
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > n

    return should_stop


def test_evaluation_raises_stopped_and_returns_nothing_when_asked_to_stop(tiny_weights):
    faces = tiny_weights.parent.parent / "faces"
    with pytest.raises(EvaluationStopped):
        evaluate(tiny_weights, faces, should_stop=lambda: True)


def test_tagger_training_returns_the_net_so_far_when_asked_to_stop():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, size=(64, 3, 64, 64), dtype=np.uint8))
    cond = torch.zeros(64, TaggerArchitecture().cond_dim)
    cond[:, 0] = 1
    net = TaggerNet(TaggerArchitecture(width=4, feature_dim=16))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    train_tagger(images, cond, epochs=3, batch=16, init=net, should_stop=lambda: True)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # stopped before the first step
    assert not net.training
    train_tagger(images, cond, epochs=3, batch=16, init=net, should_stop=_calls_then_true(2))
    assert not all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # two steps taken


def test_review_export_leaves_only_complete_image_and_tag_pairs_when_asked_to_stop(tmp_path):
    dataset = tmp_path / "ds"
    (dataset / "crops").mkdir(parents=True)
    with Catalogue(dataset) as cat:
        for job in cat.plan([f"/nowhere/{i}.png" for i in range(10)]):
            name = f"crops/{job.source_id:07d}.png"
            Image.new("RGB", (64, 64), (job.source_id * 20, 0, 0)).save(dataset / name)
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
                    (
                        FaceResult(
                            0,
                            (1, 2, 3, 4),
                            (0, 0, 8, 8),
                            0.9,
                            (1, 2, 3),
                            (1, 2, 3),
                            (1, 2, 3),
                            name,
                            64,
                            ("blue_hair",),
                            "detector",
                            job.source_id,
                        ),
                    ),
                )
            )
        cat.set_decisions(dict.fromkeys(cat.face_ids(), "keep"))
    seen = []
    count = export_kept(
        dataset, tmp_path / "out", progress=lambda d, t, p: seen.append((d, t)), should_stop=_calls_then_true(4)
    )
    assert count == 4 and seen[-1] == (4, 10)
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    stems = {name.rsplit(".", 1)[0] for name in files}
    assert len(files) == 8 and files == sorted(f"{s}.{ext}" for s in stems for ext in ("png", "txt"))
    assert export_kept(dataset, tmp_path / "out") == 10  # running it again finishes the export
