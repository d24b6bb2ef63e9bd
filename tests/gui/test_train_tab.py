import json
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QLabel

from mangagan_app.config import TrainingConfig
from mangagan_app.core.attributes import VOCABULARY
from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.gui.train_tab import FINE_TUNE_LEARNING_RATE, TrainTab
from mangagan_app.ml.trainer import train
from mangagan_app.ml.training_plan import FEW_FACES, MIN_STEPS


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    write_sketchbook(folder, 96, size=64, seed=5, workers=1)
    return folder


@pytest.fixture(scope="module")
def twenty_faces(tmp_path_factory) -> Path:
    """Fewer faces than one batch of the default 64 (or the 32 the tests ask for)."""
    folder = tmp_path_factory.mktemp("twenty_faces")
    write_sketchbook(folder, 20, size=64, seed=8, workers=1)
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
    _start_from_nothing(tab)  # these runs learn tiny networks from scratch
    tab.width_spin.setValue(8)
    tab.batch_spin.setValue(32)
    tab.epochs_spin.setValue(epochs)
    tab.run_edit.setText(str(tmp_path / "run"))
    return tab


def _start_from_nothing(tab: TrainTab) -> None:
    """Choose "Nothing: learn from scratch" in Start from, as a person does."""
    tab.start_from_combo.setCurrentIndex(0)
    tab.start_from_combo.activated.emit(0)


def test_training_runs_to_the_end_when_started_from_the_tab(qtbot, tmp_path, face_folder):
    tab = _tab(qtbot, tmp_path, face_folder, epochs=2)
    said = []
    tab.status_message.connect(said.append)
    with qtbot.waitSignal(
        tab.status_message, timeout=240_000, check_params_cb=lambda m: m.startswith("Training finished")
    ):
        tab.start_button.click()
    assert [m.split(" ")[0] for m in said] == ["Starting", "Training", "Training"]
    assert said[1].startswith("Training 96 faces at 64 px on CPU")
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
    with qtbot.waitSignal(
        tab.status_message, timeout=240_000, check_params_cb=lambda m: m.startswith("Training stopped at step")
    ) as stopped:
        tab.start_button.click()
        qtbot.waitUntil(lambda: _training_step(tab) > 0, timeout=120_000)
        tab.stop_button.click()
    stopped_at = int(stopped.args[0].split()[-1])
    assert stopped_at >= _training_step(tab) > 0
    assert "Stopped at step" in tab.progress_label.text()
    # The result arrives just before the thread ends; Resume is enabled once it has.
    qtbot.waitUntil(lambda: tab.resume_button.isEnabled(), timeout=30_000)

    with qtbot.waitSignal(
        tab.status_message, timeout=240_000, check_params_cb=lambda m: m.startswith("Training stopped at step")
    ) as again:
        tab.resume_button.click()
        qtbot.waitUntil(lambda: _training_step(tab) > stopped_at, timeout=120_000)
        tab.stop_button.click()
    assert int(again.args[0].split()[-1]) > stopped_at


def test_a_new_run_fine_tunes_an_earlier_one_with_film_and_the_choices_are_remembered(qtbot, tmp_path, face_folder):
    from mangagan_app.ml.resume_state import load_resume_state

    tab = _tab(qtbot, tmp_path, face_folder, epochs=1)
    tab.g_conditioning_combo.setCurrentIndex(tab.g_conditioning_combo.findData("input"))
    with qtbot.waitSignal(
        tab.status_message, timeout=240_000, check_params_cb=lambda m: m.startswith("Training finished")
    ):
        tab.start_button.click()
    qtbot.waitUntil(lambda: tab.start_button.isEnabled(), timeout=30_000)

    earlier = tmp_path / "run"
    tab.run_edit.setText(str(tmp_path / "fine-tuned"))
    tab.init_edit.setText(str(earlier))
    tab.g_conditioning_combo.setCurrentIndex(tab.g_conditioning_combo.findData("film"))
    with qtbot.waitSignal(
        tab.status_message, timeout=240_000, check_params_cb=lambda m: m.startswith("Training finished")
    ):
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
    train(
        TrainingConfig(
            data=str(faces),
            resolution=32,
            width=8,
            batch=16,
            epochs=epochs,
            tick_steps=5,
            preview_steps=1000,
            threads=1,
            checkpoint_minutes=60.0,
            **overrides,
        ),
        run_dir,
    )


def _finish(qtbot, tab: TrainTab, button) -> None:
    """Click ``button`` and wait for the run to end, finished or failed."""
    with qtbot.waitSignal(
        tab.status_message,
        timeout=240_000,
        check_params_cb=lambda m: m.startswith(("Training finished", "Training ended")),
    ):
        button.click()
    qtbot.waitUntil(lambda: tab.start_button.isEnabled(), timeout=30_000)


def _healthy_run(folder: Path, steps: int) -> Path:
    """A run folder as a long healthy run of :func:`_begin_run`'s networks leaves it (its checkpoint is not read)."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TrainingConfig(resolution=32, width=8, batch=16).to_dict()))
    (folder / "stats.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "d_adv": 1.2, "d_real": 0.6, "d_fake": 0.4}) + "\n"
            for s in range(100, steps + 1, 100)
        )
    )
    (folder / "checkpoint.pt").write_bytes(b"")
    return folder


def test_a_failed_run_does_not_look_finished_and_the_banner_offers_a_healthy_run_to_start_from(
    qtbot, tmp_path, small_faces
):
    _begin_run(small_faces, tmp_path / "run", lr_g=0.0)  # a G that never learns: D must win
    tab = _tab(qtbot, tmp_path, small_faces, epochs=40)
    assert not tab.warning_banner.isVisibleTo(tab)
    with qtbot.waitSignal(
        tab.status_message, timeout=240_000, check_params_cb=lambda m: m.startswith("Training ended")
    ) as ended:
        tab.resume_button.click()
    assert ended.args[0] == "Training ended at step 320/320: the run has failed"
    assert tab.last_progress.step == 320
    assert tab.progress_label.text().startswith("Ended at step 320/320, but the run has failed")
    assert "Finished" not in tab.progress_label.text()
    assert tab.warning_banner.isVisibleTo(tab)
    text = tab.warning_label.text()
    assert text.startswith("The discriminator has won at step ") and "generator has stopped learning" in text
    assert '"Start from"' in text and "--" not in text  # the tab's control, not the command line's flag
    # no earlier run here draws faces: the shipped model, which ships its discriminator, is offered
    assert tab.start_from_button.isVisibleTo(tab)
    assert tab.start_from_button.text() == "Start from mangagan-sketchbook64 instead"

    healthy = _healthy_run(tmp_path / "sketchbook-run", steps=6000)
    qtbot.waitUntil(lambda: tab.start_button.isEnabled(), timeout=30_000)
    tab.epochs_spin.setValue(41)
    with qtbot.waitSignal(
        tab.status_message, timeout=240_000, check_params_cb=lambda m: m.startswith("Training ended")
    ):
        tab.resume_button.click()
        assert not tab.start_from_button.isVisibleTo(tab)  # not while it runs
    assert tab.start_from_button.isVisibleTo(tab)
    assert tab.start_from_button.text() == "Start from sketchbook-run instead"
    qtbot.mouseClick(tab.start_from_button, Qt.MouseButton.LeftButton)
    assert Path(tab.init_edit.text()).expanduser() == healthy
    assert '"Start from"' not in tab.plan_notes.text()  # fine-tuning: no warning about scratch


def test_no_banner_shows_when_the_run_is_healthy(qtbot, tmp_path, small_faces):
    _begin_run(small_faces, tmp_path / "run")
    tab = _tab(qtbot, tmp_path, small_faces, epochs=40)
    _finish(qtbot, tab, tab.resume_button)
    assert tab.last_progress.step == 320  # well past the steps a warning waits for
    assert not tab.warning_banner.isVisibleTo(tab) and tab.warning_label.text() == ""


def test_the_plot_shows_how_d_rates_real_and_generated_faces_when_training(qtbot, tmp_path, face_folder):
    tab = _tab(qtbot, tmp_path, face_folder, epochs=4)
    tab.resize(1400, 900)
    tab.show()
    _finish(qtbot, tab, tab.start_button)
    # The preview: one column per hair colour, every face the same size, every gap 2 px.
    sheet, colours = tab.preview_label.pixmap(), len(VOCABULARY.group("hair_colour").values)
    tile = (sheet.width() - 2) // colours - 2
    assert sheet.width() == colours * (tile + 2) + 2 and (sheet.height() - 2) % (tile + 2) == 0
    assert tile >= 48 and sheet.width() <= tab.preview_label.width() and sheet.height() <= tab.preview_label.height()
    rated = tab.rating_plot.listDataItems()
    assert rated == [tab.curves["d_real"], tab.curves["d_fake"]]
    for curve in rated:
        steps, ratings = curve.getData()
        assert list(steps) == [10, 12] and all(0.0 <= r <= 1.0 for r in ratings)
    assert [label.text for _, label in tab.legends[tab.rating_plot].items] == ["Real faces", "Generated faces"]
    assert [label.text for _, label in tab.legends[tab.loss_plot].items] == [
        "Judge (D)",
        "Generator (G)",
        "Judge: tags",
        "Generator: tags",
    ]
    assert not set(rated) & set(tab.loss_plot.listDataItems())


def test_the_banner_stays_until_a_new_run_starts_when_a_failed_run_is_resumed(
    qtbot, tmp_path, small_faces, face_folder
):
    _begin_run(small_faces, tmp_path / "run", epochs=40, lr_g=0.0)  # fails, and stats.jsonl says so
    tab = _tab(qtbot, tmp_path, small_faces, epochs=41)
    with qtbot.waitSignal(
        tab.status_message, timeout=240_000, check_params_cb=lambda m: m.startswith("Training ended")
    ):
        tab.resume_button.click()
        # Read back from the run folder before the first resumed step.
        assert tab.warning_banner.isVisibleTo(tab) and "discriminator has won" in tab.warning_label.text()
        assert tab.curves["d_fake"].getData()[0][0] == 5
    qtbot.waitUntil(lambda: tab.start_button.isEnabled(), timeout=30_000)
    assert tab.warning_banner.isVisibleTo(tab)

    tab.folder_edit.setText(str(face_folder))
    tab.run_edit.setText(str(tmp_path / "new"))
    tab.epochs_spin.setValue(1)
    with qtbot.waitSignal(
        tab.status_message, timeout=240_000, check_params_cb=lambda m: m.startswith("Training finished")
    ):
        tab.start_button.click()
        assert not tab.warning_banner.isVisibleTo(tab) and tab.history.series == {}
    assert not tab.warning_banner.isVisibleTo(tab)


def _tab_on_folder(qtbot, tmp_path: Path, folder: Path) -> TrainTab:
    """A Train tab with its own settings file, training on ``folder``."""
    tab = TrainTab(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(tab)
    tab.use_folder.setChecked(True)
    tab.folder_edit.setText(str(folder))
    return tab


def _just_enough_faces(tmp_path: Path, face_folder: Path) -> Path:
    """A folder of exactly FEW_FACES faces (links to one face)."""
    many = tmp_path / "many"
    many.mkdir()
    for i in range(FEW_FACES):
        (many / f"{i}.png").symlink_to(next(face_folder.glob("*.png")))
    return many


def test_a_dataset_smaller_than_the_batch_trains_with_the_batch_lowered_and_said(qtbot, tmp_path, twenty_faces):
    tab = _tab_on_folder(qtbot, tmp_path, twenty_faces)
    # Choosing the data fits the settings to it, and says before Start what the run will do.
    assert (tab.batch_spin.value(), tab.epochs_spin.value()) == (16, MIN_STEPS)
    assert tab.plan_label.text().startswith(f"Trains on 20 face images: {MIN_STEPS:,} steps of 16 faces")
    assert "about " in tab.plan_label.text()
    # So few faces start from the shipped model, and the tab says why and how to learn from scratch.
    assert tab.start_from_combo.currentText().startswith("The shipped model")
    assert tab.init_edit.text().endswith("mangagan-sketchbook64.safetensors")
    assert "Starts from the shipped model" in tab.plan_notes.text()
    _start_from_nothing(tab)
    assert tab.init_edit.text() == "" and "Starts from the shipped model" not in tab.plan_notes.text()
    assert "few to learn from scratch" in tab.plan_notes.text()

    tab.width_spin.setValue(8)
    tab.batch_spin.setValue(64)  # asked for anyway: lowered, and said
    tab.epochs_spin.setValue(2)
    assert "Faces per step lowered from 64 to 16: 20 faces are fewer than one step of 64." in tab.plan_notes.text()
    tab.run_edit.setText(str(tmp_path / "run"))
    with qtbot.waitSignal(
        tab.status_message, timeout=30_000, check_params_cb=lambda m: m.startswith("Starting")
    ) as started:
        tab.start_button.click()
    assert "Faces per step lowered from 64 to 16" in started.args[0]
    assert "Faces per step lowered from 64 to 16" in tab.progress_label.text()
    assert tab.batch_spin.value() == 16
    with qtbot.waitSignal(
        tab.status_message, timeout=240_000, check_params_cb=lambda m: m.startswith("Training finished")
    ):
        pass
    assert json.loads((tmp_path / "run" / "config.json").read_text())["batch"] == 16
    assert tab.progress_bar.value() == tab.progress_bar.maximum() == 2  # one step a pass
    assert "look at the preview" in tab.progress_label.text()  # few faces from scratch: said again at the end


def test_starting_a_second_time_gives_a_second_run_in_a_new_folder(qtbot, tmp_path, face_folder):
    tab = _tab(qtbot, tmp_path, face_folder, epochs=1)
    _finish(qtbot, tab, tab.start_button)
    first = tmp_path / "run"
    assert (first / "checkpoint.pt").exists() and tab.progress_bar.value() == 3

    tab.epochs_spin.setValue(2)
    with qtbot.waitSignal(
        tab.status_message, timeout=30_000, check_params_cb=lambda m: m.startswith("Starting")
    ) as started:
        tab.start_button.click()
        # A new run: the bar and the plots start again from nothing.
        assert tab.progress_bar.value() == 0 and tab.history.series == {}
    assert started.args[0] == (
        "Starting run-2… run already holds a run, so this one goes into run-2 "
        "(choose the earlier folder and press Resume to continue that one)."
    )
    assert Path(tab.run_edit.text()).expanduser() == tmp_path / "run-2"
    qtbot.waitUntil(lambda: tab.start_button.isEnabled(), timeout=240_000)
    assert (tmp_path / "run-2" / "checkpoint.pt").exists()
    assert tab.progress_bar.value() == tab.progress_bar.maximum() == 6
    assert tab.progress_label.text().startswith("Finished at step 6/6")
    assert "already holds a training run" not in tab.progress_label.text()
    assert json.loads((first / "config.json").read_text())["epochs"] == 1  # the first run is untouched


def test_the_tab_names_settings_for_artists_with_the_technical_names_in_tooltips(qtbot, tmp_path):
    tab = TrainTab(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(tab)
    tab.show()
    labels = {w.text() for w in tab.findChildren(QLabel)}
    for engineer in ("Network width", "Loss", "Attributes in G", "Batch size", "Epochs", "Resolution (px)"):
        assert engineer not in labels
    assert {
        "Face size",
        "Training length",
        "Faces per step",
        "Network size",
        "Learning rule",
        "Attributes steer",
    } <= labels
    assert tab.loss_combo.currentText() == "Standard" and "dcgan" in tab.loss_combo.toolTip()
    assert tab.g_conditioning_combo.currentText() == "Throughout the drawing"
    assert "FiLM" in tab.g_conditioning_combo.toolTip()
    for spin, name in ((tab.batch_spin, "Batch size"), (tab.width_spin, "Network width"), (tab.epochs_spin, "Epochs")):
        assert spin.toolTip().startswith(name)
    # The rarely changed ones are folded away under "Advanced", and the choice is remembered.
    assert not tab.batch_spin.isVisibleTo(tab) and tab.epochs_spin.isVisibleTo(tab)
    qtbot.mouseClick(tab.advanced_toggle, Qt.MouseButton.LeftButton)
    assert tab.batch_spin.isVisibleTo(tab)
    again = TrainTab(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(again)
    assert again.advanced_toggle.isChecked()


def test_folder_fields_show_a_whole_path_in_a_window_of_1400_by_900(qtbot, tmp_path):
    from mangagan_app.gui.main_window import MainWindow

    window = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    window.tabs.setCurrentWidget(window.train_tab)
    tab = window.train_tab
    path = "~/.local/share/MangaGAN/MangaGAN Studio/runs/run-20261202-153000"
    for edit in (tab.run_edit, tab.init_edit, tab.folder_edit):
        edit.setText(path)
        qtbot.waitUntil(lambda edit=edit: edit.isVisible(), timeout=5000)
        frame = edit.style().pixelMetric(edit.style().PixelMetric.PM_DefaultFrameWidth)
        assert edit.fontMetrics().horizontalAdvance(path) <= edit.contentsRect().width() - 2 * frame - 4
        assert str(Path(path).expanduser()) in edit.toolTip()
    window.close()


def test_typing_a_folder_chooses_it_as_the_data_and_shows_its_plan(qtbot, tmp_path, twenty_faces):
    tab = TrainTab(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(tab)
    tab.show()
    assert tab.use_sketchbook.isChecked() and "sketchbook faces" in tab.plan_label.text()
    tab.folder_edit.setFocus()
    qtbot.keyClicks(tab.folder_edit, str(twenty_faces))
    assert tab.use_folder.isChecked() and tab.plan_label.text().startswith("Trains on 20 face images")
    qtbot.keyClicks(tab.folder_edit, "-missing")
    assert "no such folder" in tab.plan_label.text()
    tab.sketchbook_count.setValue(5000)
    assert tab.use_sketchbook.isChecked() and tab.plan_label.text().startswith("Trains on 5,000 sketchbook faces")


def test_resume_waits_for_a_checkpoint_and_the_settings_scroll_rather_than_squeeze_when_short(
    qtbot, tmp_path, face_folder
):
    tab = _tab(qtbot, tmp_path, face_folder, epochs=4)
    assert not tab.resume_button.isEnabled()  # a fresh run folder: nothing to resume
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "checkpoint.pt").write_bytes(b"")
    tab.run_edit.setText(str(tmp_path / "old"))
    assert tab.resume_button.isEnabled()
    tab.resize(1400, 600)
    tab.show()
    qtbot.waitExposed(tab)
    tab.advanced_toggle.setChecked(True)
    qtbot.waitUntil(lambda: tab.controls_scroll.verticalScrollBar().maximum() > 0)
    for field in (tab.epochs_spin, tab.batch_spin, tab.width_spin, tab.folder_edit):
        assert field.height() >= field.minimumSizeHint().height()


def test_few_faces_start_from_the_shipped_model_until_the_person_chooses_and_many_go_back_to_scratch(
    qtbot, tmp_path, twenty_faces, face_folder
):
    tab = _tab_on_folder(qtbot, tmp_path, twenty_faces)
    assert tab.config().init_from.endswith("mangagan-sketchbook64.safetensors")
    tab.sketchbook_count.setValue(tab.sketchbook_count.value() + 1000)  # the sketchbook: many faces, from scratch
    assert tab.config().init_from == "" and tab.start_from_combo.currentIndex() == 0
    tab.folder_edit.setText(str(face_folder))
    tab.use_folder.setChecked(True)
    assert tab.config().init_from.endswith("mangagan-sketchbook64.safetensors")
    _start_from_nothing(tab)
    tab.folder_edit.setText(str(twenty_faces))  # the person's choice stands for new data too
    assert tab.config().init_from == ""


def test_a_fine_tune_learns_slowly_on_few_faces_and_at_the_usual_rate_on_many(
    qtbot, tmp_path, twenty_faces, face_folder
):
    tab = _tab_on_folder(qtbot, tmp_path, twenty_faces)
    assert (tab.config().lr_g, tab.config().lr_d) == (FINE_TUNE_LEARNING_RATE, FINE_TUNE_LEARNING_RATE)
    many = _just_enough_faces(tmp_path, face_folder)
    tab.folder_edit.setText(str(many))
    tab.start_from_combo.setCurrentIndex(1)  # the person fine-tunes the shipped model on them
    tab.start_from_combo.activated.emit(1)
    config = tab.config()
    assert config.init_from.endswith("mangagan-sketchbook64.safetensors")
    assert (config.lr_g, config.lr_d) == (TrainingConfig().lr_g, TrainingConfig().lr_d)


def test_a_start_the_tab_chose_is_still_its_own_after_a_restart(qtbot, tmp_path, twenty_faces, face_folder):
    tab = _tab_on_folder(qtbot, tmp_path, twenty_faces)
    assert tab.config().init_from.endswith("mangagan-sketchbook64.safetensors")
    tab._save_choices()
    again = TrainTab(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(again)
    assert "Starts from the shipped model" in again.plan_notes.text()
    many = _just_enough_faces(tmp_path, face_folder)
    again.folder_edit.setText(str(many))
    assert again.config().init_from == ""  # more faces: the tab takes its own choice back
