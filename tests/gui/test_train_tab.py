from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from mangagan_app.config import TrainingConfig
from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.gui.train_tab import TrainTab
from mangagan_app.ml.trainer import train


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    write_sketchbook(folder, 96, size=64, seed=5, workers=1)
    return folder


@pytest.fixture(scope="module")
def small_faces(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("small_faces")
    write_sketchbook(folder, 128, size=32, seed=11, workers=1)
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
    assert {"d_adv", "g_adv"} <= set(tab.history.series)
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


def _begin_run(faces: Path, run_dir: Path, *, epochs: int = 1, **overrides) -> None:
    """A run at 32 px, begun by the trainer itself for the tab to resume.

    The tab offers neither 32 px nor learning rates, and resuming keeps the run's own
    settings; 8 steps (one epoch) are long before the 200 a warning needs.
    """
    train(TrainingConfig(data=str(faces), resolution=32, width=8, batch=16, epochs=epochs, tick_steps=5,
                         preview_steps=1000, threads=1, checkpoint_minutes=60.0, **overrides), run_dir)


def _finish(qtbot, tab: TrainTab, button) -> None:
    with qtbot.waitSignal(tab.status_message, timeout=240_000,
                          check_params_cb=lambda m: m.startswith("Training finished")):
        button.click()
    qtbot.waitUntil(lambda: tab.start_button.isEnabled(), timeout=30_000)


def test_a_banner_says_the_discriminator_has_won_when_g_cannot_learn(qtbot, tmp_path, small_faces):
    _begin_run(small_faces, tmp_path / "run", lr_g=0.0)  # a G that never learns: D must win
    tab = _tab(qtbot, tmp_path, small_faces, epochs=40)
    assert not tab.warning_banner.isVisibleTo(tab)
    _finish(qtbot, tab, tab.resume_button)
    assert tab.last_progress.step == 320
    assert tab.warning_banner.isVisibleTo(tab)
    text = tab.warning_label.text()
    assert text.startswith("The discriminator has won at step ") and "generator has stopped learning" in text
    assert '"Start from"' in text and "--" not in text  # the tab's control, not the command line's flag


def test_no_banner_shows_when_the_run_is_healthy(qtbot, tmp_path, small_faces):
    _begin_run(small_faces, tmp_path / "run")
    tab = _tab(qtbot, tmp_path, small_faces, epochs=40)
    _finish(qtbot, tab, tab.resume_button)
    assert tab.last_progress.step == 320  # well past the steps a warning waits for
    assert not tab.warning_banner.isVisibleTo(tab) and tab.warning_label.text() == ""


def test_the_plot_shows_how_d_rates_real_and_generated_faces_when_training(qtbot, tmp_path, face_folder):
    tab = _tab(qtbot, tmp_path, face_folder, epochs=4)
    _finish(qtbot, tab, tab.start_button)
    rated = tab.rating_plot.listDataItems()
    assert rated == [tab.curves["d_real"], tab.curves["d_fake"]]
    for curve in rated:
        steps, ratings = curve.getData()
        assert list(steps) == [10, 12] and all(0.0 <= r <= 1.0 for r in ratings)
    assert [label.text for _, label in tab.legends[tab.rating_plot].items] == [
        "D on real faces", "D on generated faces"]
    assert not set(rated) & set(tab.loss_plot.listDataItems())


def test_the_banner_stays_until_a_new_run_starts_when_a_failed_run_is_resumed(
        qtbot, tmp_path, small_faces, face_folder):
    _begin_run(small_faces, tmp_path / "run", epochs=40, lr_g=0.0)  # fails, and stats.jsonl says so
    tab = _tab(qtbot, tmp_path, small_faces, epochs=41)
    with qtbot.waitSignal(tab.status_message, timeout=240_000,
                          check_params_cb=lambda m: m.startswith("Training finished")):
        tab.resume_button.click()
        # Read back from the run folder before the first resumed step.
        assert tab.warning_banner.isVisibleTo(tab) and "discriminator has won" in tab.warning_label.text()
        assert tab.curves["d_fake"].getData()[0][0] == 5
    qtbot.waitUntil(lambda: tab.start_button.isEnabled(), timeout=30_000)
    assert tab.warning_banner.isVisibleTo(tab)

    tab.folder_edit.setText(str(face_folder))
    tab.run_edit.setText(str(tmp_path / "new"))
    tab.epochs_spin.setValue(1)
    with qtbot.waitSignal(tab.status_message, timeout=240_000,
                          check_params_cb=lambda m: m.startswith("Training finished")):
        tab.start_button.click()
        assert not tab.warning_banner.isVisibleTo(tab) and tab.history.series == {}
    assert not tab.warning_banner.isVisibleTo(tab)
