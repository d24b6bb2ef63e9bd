"""Faults the window must survive: a garbled settings file, a damaged default model."""

import numpy as np
from PySide6.QtCore import QSettings

from mangagan_app.gui.generate_tab import GenerateTab
from mangagan_app.gui.main_window import MainWindow
from mangagan_app.ml.checkpoint import weights_files

# Every key the tabs read, each given a value of the wrong kind or out of range.
JUNK = {
    "window": {"geometry": "not a geometry", "tab": "1e99"},
    "dataset": {"size": "huge", "workers": "-", "folder": "@Variant(\\0\\0\\0\\x7f\\0\\0\\0\\x18QString)"},
    "train": {
        "use_folder": "perhaps",
        "sketchbook_count": "99999999999999999999",
        "width": "w",
        "batch": "3.5",
        "epochs": "@Invalid()",
        "resolution": "@ByteArray(\\x1)",
        "loss": "1, 2",
    },
    "generate": {
        "smooth": "maybe",
        "lock_noise": "2",
        "variation_mode": "x",
        "morph_frames": "-1e99",
        "export_scale": "inf",
        "export_smooth": "nan",
        "last_seed": "seed",
    },
}


def _controls(window: MainWindow) -> dict[str, object]:
    g, t, d = window.generate_tab, window.train_tab, window.dataset_tab
    return {
        "tab": window.tabs.currentIndex(),
        "size": d.size_combo.currentText(),
        "workers": d.workers_spin.value(),
        "use_folder": t.use_folder.isChecked(),
        "count": t.sketchbook_count.value(),
        "width": t.width_spin.value(),
        "batch": t.batch_spin.value(),
        "epochs": t.epochs_spin.value(),
        "res": t.resolution.currentText(),
        "loss": t.loss_combo.currentText(),
        "frames": g.frames_box.value(),
        "scale": g.scale_box.value(),
        "lock": g.lock_noise.isChecked(),
        "mode": g.variation_mode.currentIndex(),
    }


def test_window_opens_with_defaults_and_says_so_when_the_settings_file_is_garbage(qtbot, tmp_path):
    fresh = MainWindow(QSettings(str(tmp_path / "fresh.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(fresh)
    defaults = _controls(fresh)

    garbage = tmp_path / "garbage.ini"
    lines = []
    for group, values in JUNK.items():
        lines.append(f"[{group}]")
        lines += [f"{key}={value}" for key, value in values.items()]
    rng = np.random.default_rng(3)
    garbage.write_bytes(rng.bytes(300) + b"\n" + "\n".join(lines).encode() + b"\n" + rng.bytes(300))
    window = MainWindow(QSettings(str(garbage), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert _controls(window) == defaults
    message = window.statusBar().currentMessage()
    assert "reset to defaults" in message and "window/tab" in message and "generate/morph_frames" in message
    window.close()  # and the settings can be written again
    assert QSettings(str(garbage), QSettings.Format.IniFormat).value("window/tab") in (0, "0")


def _copy_model(source, target_dir, name):
    st, card = weights_files(source)
    target_dir.mkdir(exist_ok=True)
    (target_dir / f"{name}.safetensors").write_bytes(st.read_bytes())
    (target_dir / f"{name}.json").write_bytes(card.read_bytes())
    return target_dir / f"{name}.safetensors"


def _tab(qtbot, tmp_path, weights_dir):
    tab = GenerateTab(
        QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
        weights_dir=weights_dir,
        data_dir=tmp_path / "data",
    )
    qtbot.addWidget(tab)
    messages = []
    tab.status_message.connect(messages.append)
    return tab, messages


def test_generate_tab_opens_the_next_model_and_names_the_damaged_one_when_the_default_is_corrupted(
    qtbot, tmp_path, tiny_weights
):
    import json
    import os

    folder = tmp_path / "weights"
    good = _copy_model(tiny_weights, folder, "good")
    bad = _copy_model(tiny_weights, folder, "newest")
    card = json.loads(bad.with_suffix(".json").read_text())
    bad.with_suffix(".json").write_text(json.dumps({**card, "default": True}))
    bad.write_bytes(bad.read_bytes()[:1000])  # truncated, as by a full disk or an interrupted copy
    os.utime(good, (1, 1))
    tab, messages = _tab(qtbot, tmp_path, folder)
    qtbot.waitUntil(lambda: tab.service is not None, timeout=30000)
    assert tab.service.name == "good"
    assert any("Opened good instead" in m and "newest.safetensors" in m for m in messages), messages
    tab.shutdown()


def test_generate_tab_says_there_is_no_usable_model_when_every_model_is_damaged(qtbot, tmp_path, tiny_weights):
    folder = tmp_path / "weights"
    for name in ("a", "b"):
        path = _copy_model(tiny_weights, folder, name)
        path.write_bytes(b"\0" * 64)
    tab, messages = _tab(qtbot, tmp_path, folder)
    qtbot.waitUntil(lambda: any("No usable model" in m for m in messages), timeout=30000)
    assert tab.service is None and not tab.randomize_button.isEnabled()
    assert "a.safetensors" in messages[-1] and "b.safetensors" in messages[-1]
    assert "No usable model" in tab.canvas._message


def test_cancel_stops_cropping_and_leaves_a_consistent_catalogue_when_clicked(qtbot, tmp_path):
    from PIL import Image

    from mangagan_app.core.catalogue import Catalogue
    from mangagan_app.core.sketchbook import render_face, sample_attributes
    from mangagan_app.gui.dataset_tab import DatasetTab

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(8)
    for i in range(24):
        canvas = Image.new("RGB", (200, 200), (235, 230, 220))
        canvas.paste(render_face(sample_attributes(rng), rng, 160), (20, 20))
        canvas.save(src / f"page{i:02d}.png")
    tab = DatasetTab(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(tab)
    tab.sources.add_paths([str(src)])
    tab.dataset_edit.setText(str(tmp_path / "ds"))
    tab.workers_spin.setValue(1)
    tab.start_cropping()
    with qtbot.waitSignal(tab.worker.reported, timeout=60_000):
        pass
    with qtbot.waitSignal(tab.worker.returned, timeout=60_000) as finished:
        tab.cancel_button.click()
    summary = finished.args[0]
    qtbot.waitUntil(lambda: tab.start_button.isEnabled())
    assert summary.stopped and 1 <= summary.processed < 24
    with Catalogue(tmp_path / "ds") as cat:
        assert cat.integrity() == "ok"
        status = cat.source_status()
        assert status["done"] == summary.processed and status["done"] + status["pending"] == 24
        faces = cat.faces(cat.face_ids())
        assert all((tmp_path / "ds" / f.crop_file).is_file() for f in faces.values())
        assert tab.model.rowCount() == len(faces)
    tab.shutdown()
