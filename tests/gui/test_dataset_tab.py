"""The Dataset tab: a crop run off the GUI thread, review by keyboard, decisions and undo persisted."""

import pytest
from PIL import Image
from PySide6.QtCore import QSettings, Qt

from mangagan_app.config import CropConfig
from mangagan_app.core.catalogue import Catalogue
from mangagan_app.core.cropping import draw_reference_face
from mangagan_app.core.cropping.pipeline import crop_sources
from mangagan_app.gui.dataset_tab import FILTERS, DatasetTab


def _sources(folder):
    folder.mkdir()
    for i, sizes in enumerate([(100, 140), (120, 180)]):
        canvas = Image.new("RGB", (360, 220), (225, 235, 245))
        x = 10
        for size in sizes:
            canvas.paste(draw_reference_face(size), (x, 10))
            x += size + 20
        canvas.save(folder / f"scene{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


@pytest.fixture()
def settings(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture()
def dataset(tmp_path):
    crop_sources([_sources(tmp_path / "src")], tmp_path / "ds", CropConfig(workers=1))
    return tmp_path / "ds"


def _tab(qtbot, settings):
    tab = DatasetTab(settings)
    qtbot.addWidget(tab)
    tab.resize(1000, 700)
    tab.show()
    qtbot.waitExposed(tab)
    return tab


def _decisions(dataset):
    with Catalogue(dataset) as cat:
        return {i: f.decision for i, f in cat.faces(cat.face_ids()).items()}


def test_keyboard_review_is_saved_and_undone_when_keys_pressed(qtbot, settings, dataset):
    tab = _tab(qtbot, settings)
    tab.dataset_edit.setText(str(dataset))
    tab.open_dataset(str(dataset))
    assert tab.model.rowCount() == 4
    first, second = tab.model.face_id(0), tab.model.face_id(1)
    tab.grid.setFocus()
    qtbot.keyClick(tab.grid, Qt.Key.Key_K)  # keep, then the next face is current
    qtbot.keyClick(tab.grid, Qt.Key.Key_X)
    assert _decisions(dataset)[first] == "keep"
    assert _decisions(dataset)[second] == "reject"
    qtbot.keyClick(tab.grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert _decisions(dataset)[second] == "unreviewed"
    qtbot.keyClick(tab.grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert _decisions(dataset)[second] == "reject"
    assert "1 kept · 1 rejected · 2 unreviewed" in tab.counts_label.text()
    assert [tab.errors_tree.topLevelItem(i).text(0) for i in range(tab.errors_tree.topLevelItemCount())] == [
        "broken.png"
    ]
    tab.shutdown()

    # A new window remembers the folder and shows the saved decisions.
    reopened = _tab(qtbot, settings)
    reopened.filter_combo.setCurrentIndex([f for _, f in FILTERS].index("keep"))
    assert reopened.model.rowCount() == 1 and reopened.model.face_id(0) == first
    reopened.shutdown()


def test_reject_below_score_rejects_only_unreviewed_when_clicked(qtbot, settings, dataset):
    tab = _tab(qtbot, settings)
    tab.open_dataset(str(dataset))
    keep_id = tab.model.face_id(0)  # lowest likelihood first
    tab.apply_decisions({keep_id: "keep"})
    tab.threshold_spin.setValue(1.0)
    tab.reject_below_threshold()
    decisions = _decisions(dataset)
    assert decisions[keep_id] == "keep"
    assert sum(d == "reject" for d in decisions.values()) >= 1
    tab.undo_stack.undo()
    assert set(_decisions(dataset).values()) == {"keep", "unreviewed"}
    tab.shutdown()


def test_start_crops_in_background_and_fills_grid_when_run_ends(qtbot, settings, tmp_path):
    tab = _tab(qtbot, settings)
    tab.sources.add_paths([str(_sources(tmp_path / "src"))])
    tab.dataset_edit.setText(str(tmp_path / "ds"))
    tab.workers_spin.setValue(1)
    tab.start_cropping()
    assert tab.worker is not None and not tab.start_button.isEnabled()
    with qtbot.waitSignal(tab.worker.returned, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: tab.start_button.isEnabled())
    assert tab.model.rowCount() == 4
    assert tab.errors_tree.topLevelItemCount() == 1
    assert settings.value("dataset/folder") == str(tmp_path / "ds")
    tab.shutdown()


def test_dropped_folders_become_sources_when_dragged_from_a_file_manager(qtbot, settings, tmp_path):
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    tab = _tab(qtbot, settings)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path)), QUrl.fromLocalFile(str(tmp_path))])
    event = QDropEvent(
        QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    tab.sources.dropEvent(event)
    assert tab.sources.paths() == [str(tmp_path)]


def test_crop_size_follows_the_dataset_when_opened(qtbot, settings, tmp_path):
    crop_sources([_sources(tmp_path / "src")], tmp_path / "ds", CropConfig(size=128, workers=1))
    tab = _tab(qtbot, settings)
    tab.open_dataset(str(tmp_path / "ds"))
    assert tab.size_combo.currentText() == "128"
    tab.shutdown()
