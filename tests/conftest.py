import os

# Before any Qt import: tests never need a screen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/gui/" in item.nodeid.replace(os.sep, "/"):
            item.add_marker(pytest.mark.gui)


@pytest.fixture(autouse=True)
def _isolated_app_data(request, tmp_path, monkeypatch):
    """GUI tests write app data (runs, models, favourites) under tmp_path, never in the user's home."""
    if "tests/gui/" not in request.node.nodeid.replace(os.sep, "/"):
        return
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors on a shared CPU: one torch thread is several times faster than two."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A real generator, briefly trained on sketchbook faces at 32 px and exported with its
    card and slider directions: ``<tmp>/tiny.safetensors`` (+ ``tiny.json``)."""
    from mangagan_app.config import TrainingConfig
    from mangagan_app.core.sketchbook.dataset import write_sketchbook
    from mangagan_app.ml.checkpoint import export_run
    from mangagan_app.ml.generator_service import store_directions
    from mangagan_app.ml.trainer import train

    root = tmp_path_factory.mktemp("tiny_model")
    write_sketchbook(root / "faces", 128, size=32, seed=5, workers=1)
    # 64 steps: fewer leave BatchNorm's running statistics near their initial values,
    # and the eval-mode generator then draws the same grey square for every input.
    # One thread: two OpenMP threads on a busy 2-core machine ran this 26× slower.
    train(
        TrainingConfig(
            data=str(root / "faces"),
            resolution=32,
            width=4,
            batch=16,
            epochs=8,
            tick_steps=8,
            preview_steps=1000,
            checkpoint_minutes=60.0,
            threads=1,
        ),
        root / "run",
    )
    weights, _ = export_run(root / "run", root / "weights" / "tiny")
    store_directions(weights, samples=2000)
    return weights


@pytest.fixture
def named_tiny_weights(tiny_weights, tmp_path):
    """A copy of the tiny model whose card names one slider, "Eye size", along its first
    unsupervised direction: ``<tmp>/named/tiny.safetensors``."""
    import json
    import shutil

    weights = tmp_path / "named" / "tiny.safetensors"
    weights.parent.mkdir()
    shutil.copy(tiny_weights, weights)
    card = json.loads(tiny_weights.with_suffix(".json").read_text())
    vector = card["directions"]["vectors"][0]
    card["named_sliders"] = {"sliders": [{"key": "eye_size", "name": "Eye size", "vector": vector, "measure": {}}]}
    weights.with_suffix(".json").write_text(json.dumps(card))
    return weights


@pytest.fixture
def three_face_art(tmp_path):
    """``<tmp>/art`` holding one illustration with three reference faces side by side, tagged
    ``1girl, brown_hair, blue_eyes`` in its kohya sidecar."""
    from PIL import Image

    from mangagan_app.core.cropping import draw_reference_face

    sources = tmp_path / "art"
    sources.mkdir()
    sheet = Image.new("RGB", (512, 160), "white")
    for i in range(3):
        sheet.paste(draw_reference_face(128), (16 + i * 168, 16))
    sheet.save(sources / "three.png")
    (sources / "three.txt").write_text("1girl, brown_hair, blue_eyes\n")
    return sources
