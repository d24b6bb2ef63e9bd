from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.gui.train_tab import TrainTab


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    write_sketchbook(folder, 96, size=64, seed=5, workers=1)
    return folder


def _tab(qtbot, tmp_path, face_folder, epochs: int) -> TrainTab:
    tab = TrainTab(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(tab)
    tab.use_folder.setChecked(True)
    tab.folder_edit.setText(str(face_folder))
    tab.width_spin.setValue(8)
    tab.batch_spin.setValue(32)
    tab.epochs_spin.setValue(epochs)
    tab.run_edit.setText(str(tmp_path / "run"))
    return tab


def test_training_runs_to_the_end_when_started_from_the_tab(qtbot, tmp_path, face_folder):
    tab = _tab(qtbot, tmp_path, face_folder, epochs=2)
    with qtbot.waitSignal(tab.status_message, timeout=240_000,
                          check_params_cb=lambda m: m.startswith("Training finished")):
        tab.start_button.click()
    assert tab.progress_bar.value() == tab.progress_bar.maximum() == 6  # 2 epochs x 3 batches
    assert tab.preview_label.pixmap() is not None and not tab.preview_label.pixmap().isNull()
    assert {"d_adv", "g_adv"} <= set(tab.loss_history)
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    qtbot.waitUntil(lambda: tab.use_button.isEnabled(), timeout=30_000)

    with qtbot.waitSignal(tab.model_exported, timeout=30_000) as exported:
        tab.use_button.click()
    assert Path(exported.args[0]).is_file()


def _training_step(tab: TrainTab) -> int:
    p = tab.last_progress
    return p.step if p is not None and p.phase == "training" else 0


def test_stop_then_resume_continues_the_run_when_asked(qtbot, tmp_path, face_folder):
    tab = _tab(qtbot, tmp_path, face_folder, epochs=400)
    with qtbot.waitSignal(tab.status_message, timeout=240_000,
                          check_params_cb=lambda m: m.startswith("Training stopped at step")) as stopped:
        tab.start_button.click()
        qtbot.waitUntil(lambda: _training_step(tab) > 0, timeout=120_000)
        tab.stop_button.click()
    stopped_at = int(stopped.args[0].split()[-1])
    assert stopped_at >= _training_step(tab) > 0
    assert "Stopped at step" in tab.progress_label.text()
    # The result arrives just before the thread ends; Resume is enabled once it has.
    qtbot.waitUntil(lambda: tab.resume_button.isEnabled(), timeout=30_000)

    with qtbot.waitSignal(tab.status_message, timeout=240_000,
                          check_params_cb=lambda m: m.startswith("Training stopped at step")) as again:
        tab.resume_button.click()
        qtbot.waitUntil(lambda: _training_step(tab) > stopped_at, timeout=120_000)
        tab.stop_button.click()
    assert int(again.args[0].split()[-1]) > stopped_at


def test_a_new_run_fine_tunes_an_earlier_one_with_film_and_the_choices_are_remembered(qtbot, tmp_path, face_folder):
    from mangagan_app.ml.trainer import load_resume_state

    tab = _tab(qtbot, tmp_path, face_folder, epochs=1)
    tab.g_conditioning_combo.setCurrentIndex(tab.g_conditioning_combo.findData("input"))
    with qtbot.waitSignal(tab.status_message, timeout=240_000,
                          check_params_cb=lambda m: m.startswith("Training finished")):
        tab.start_button.click()
    qtbot.waitUntil(lambda: tab.start_button.isEnabled(), timeout=30_000)

    earlier = tmp_path / "run"
    tab.run_edit.setText(str(tmp_path / "fine-tuned"))
    tab.init_edit.setText(str(earlier))
    tab.g_conditioning_combo.setCurrentIndex(tab.g_conditioning_combo.findData("film"))
    with qtbot.waitSignal(tab.status_message, timeout=240_000,
                          check_params_cb=lambda m: m.startswith("Training finished")):
        tab.start_button.click()
    state = load_resume_state(tmp_path / "fine-tuned")
    assert state["warm_start"] == {"from": str(earlier), "steps": 3, "hours": state["warm_start"]["hours"]}
    assert state["config"]["g_conditioning"] == "film" and any(k.startswith("films.") for k in state["G"])

    again = TrainTab(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(again)
    assert again.g_conditioning_combo.currentData() == "film" and again.init_edit.text() == str(earlier)
