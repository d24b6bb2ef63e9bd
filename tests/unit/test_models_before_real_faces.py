"""Models saved before the real-faces trainer (transposed-conv G, plain D, no augmentation)
still load, render the same pixels, resume and export as what they are.

``tests/data/pre_issue14/`` was made by the code of commit 85777a9: a 2-step run
(32 px, width 4, FiLM) and four faces it drew from noise seed 9 with hair colours 0-3.
``tests/data/shipped_faces.npy``: the same four faces drawn by the shipped weights when
they were exported (2026-12-05).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mangagan_app.config import WEIGHTS_DIR, TrainingConfig
from mangagan_app.core.attributes import VOCABULARY
from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.ml.checkpoint import export_run, load_generator, read_card
from mangagan_app.ml.networks import Architecture, Generator
from mangagan_app.ml.resume_state import load_resume_state
from mangagan_app.ml.sampling import noise, to_uint8
from mangagan_app.ml.trainer import train

OLD = Path(__file__).resolve().parent.parent / "data" / "pre_issue14"
SHIPPED = WEIGHTS_DIR / "mangagan-sketchbook64.safetensors"
SHIPPED_FACES = OLD.parent / "shipped_faces.npy"


def hair_colours(n: int) -> torch.Tensor:
    cond = torch.zeros(n, VOCABULARY.dim)
    cond[torch.arange(n), torch.arange(n) % 13] = 1.0
    return cond


def draw(generator: torch.nn.Module) -> np.ndarray:
    with torch.no_grad():
        return to_uint8(generator.eval()(noise(4, 128, 9), hair_colours(4)))


def assert_same_pixels(faces: np.ndarray, reference: np.ndarray) -> None:
    # one grey level of float rounding across machines, no more
    assert faces.shape == reference.shape
    assert np.abs(faces.astype(int) - reference.astype(int)).max() <= 1


def test_old_run_renders_the_same_pixels_when_saved_before_resize_generators():
    state = load_resume_state(OLD / "run")
    arch = Architecture.from_dict(state["architecture"])
    assert (arch.g_upsample, arch.d_norm) == ("transpose", "none")
    g = Generator(arch)
    g.load_state_dict(state["G_ema"])
    assert_same_pixels(draw(g), np.load(OLD / "run_faces.npy"))


def test_shipped_weights_render_the_pixels_recorded_when_they_were_exported():
    generator, _ = load_generator(SHIPPED)
    assert_same_pixels(draw(generator), np.load(SHIPPED_FACES))


def test_a_card_from_before_the_architecture_choices_loads_as_a_transposed_g(tmp_path):
    card = read_card(SHIPPED)
    for key in ("g_upsample", "d_norm", "max_width_factor"):
        del card["architecture"][key]
    old = tmp_path / SHIPPED.name
    shutil.copy(SHIPPED, old)
    old.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
    generator, _ = load_generator(old)
    assert generator.arch.g_upsample == "transpose"
    assert_same_pixels(draw(generator), draw(load_generator(SHIPPED)[0]))


@pytest.fixture(scope="module")
def faces_32(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces32")
    write_sketchbook(folder, 32, size=32, seed=3, workers=1)
    return folder


def test_old_run_resumes_and_exports_as_its_own_architecture(faces_32, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(OLD / "run", run)
    saved = json.loads((run / "config.json").read_text(encoding="utf-8"))
    cfg = TrainingConfig.from_dict({**saved, "data": str(faces_32), "epochs": 2})
    assert (cfg.g_upsample, cfg.d_norm, cfg.augment) == ("transpose", "none", "none")
    result = train(cfg, run, resume=True)
    assert result.step == 4 and not result.stopped
    weights, _ = export_run(run, tmp_path / "model" / "old")
    arch = read_card(weights)["architecture"]
    assert (arch["g_upsample"], arch["d_norm"]) == ("transpose", "none")
    generator, _ = load_generator(weights)
    assert draw(generator).shape == (4, 32, 32, 3)
