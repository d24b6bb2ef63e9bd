"""Check originality: the dialog on its own and from the Generate tab, with the shipped tagger and a tiny model."""

import shutil

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt

from mangagan_app.gui.generate_tab import GenerateTab
from mangagan_app.gui.originality_dialog import OriginalityDialog, running_checks
from mangagan_app.ml.checkpoint import read_card
from mangagan_app.ml.originality import index_path, index_training_set, save_index
from mangagan_app.ml.tagger import load_tagger


@pytest.fixture(autouse=True)
def searches_end_with_the_test(qtbot):
    """A search still running when the interpreter exits would abort it: every test waits for its own."""
    yield
    qtbot.waitUntil(lambda: running_checks() == 0, timeout=60000)


def _copy_of(tiny_weights, folder):
    """The tiny model's weights and card copied into ``folder`` (so an index can be written beside them)."""
    folder.mkdir(exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(tiny_weights.with_suffix(suffix), folder / f"tiny{suffix}")
    return folder / "tiny.safetensors"


@pytest.fixture(scope="module")
def indexed_weights(tiny_weights, tmp_path_factory):
    """A copy of the tiny model with its training-set index beside it."""
    weights = _copy_of(tiny_weights, tmp_path_factory.mktemp("indexed"))
    index = index_training_set(
        tiny_weights.parent.parent / "faces", load_tagger(), resolution=32, unseen_count=64, workers=1
    )
    save_index(index, index_path(weights))
    return weights


def _training_face(weights, name="000010.png"):
    from PIL import Image

    folder = read_card(weights)["training"]["data"]["source"]
    return np.asarray(Image.open(f"{folder}/{name}").convert("RGB"))


def test_dialog_shows_near_copy_with_thumbnails_when_given_a_training_face(qtbot, indexed_weights, tmp_path):
    dialog = OriginalityDialog(
        _training_face(indexed_weights), indexed_weights, read_card(indexed_weights), cache_dir=tmp_path / "cache"
    )
    qtbot.addWidget(dialog)
    dialog.show()
    with qtbot.waitSignal(dialog.checked, timeout=30000):
        pass
    assert dialog.result.verdict == "near copy"
    assert dialog.result.matches[0].name == "000010.png"
    assert dialog.verdict_label.text() == "Near copy"
    thumbnail = dialog.matches_grid.itemAtPosition(0, 0).widget()
    assert thumbnail.pixmap() is not None and not thumbnail.pixmap().isNull()
    assert "000010.png" in dialog.matches_grid.itemAtPosition(1, 0).widget().text()
    dialog.grab().save(str(tmp_path / "originality.png"))


@pytest.mark.slow
def test_dialog_builds_the_index_from_the_training_folder_on_first_use_when_none_is_shipped(
    qtbot, tiny_weights, tmp_path
):
    weights = _copy_of(tiny_weights, tmp_path / "model")
    dialog = OriginalityDialog(
        _training_face(weights, "000002.png"), weights, read_card(weights), cache_dir=tmp_path / "cache"
    )
    qtbot.addWidget(dialog)
    stages = []
    dialog.worker.reported.connect(lambda _callback, values: stages.append(values[0]))
    with qtbot.waitSignal(dialog.checked, timeout=60000):
        dialog.show()
    assert "tagging training faces" in stages
    assert dialog.result.verdict == "near copy"
    assert list((tmp_path / "cache").glob("index-*.npz"))


def test_dialog_says_why_when_there_is_no_index_and_no_training_folder(qtbot, tiny_weights, tmp_path):
    card = dict(read_card(tiny_weights))
    card["training"] = {"data": {"source": str(tmp_path / "gone")}}
    dialog = OriginalityDialog(
        np.zeros((32, 32, 3), np.uint8), tmp_path / "other.safetensors", card, cache_dir=tmp_path / "cache"
    )
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.error is not None, timeout=30000)
    assert "gone" in dialog.explanation_label.text()
    assert dialog.verdict_label.text() == "Cannot check this face"


def test_generate_tab_opens_the_check_for_the_current_face_when_o_is_pressed(qtbot, indexed_weights, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    tab = GenerateTab(settings, weights_dir=indexed_weights.parent, data_dir=tmp_path / "data")
    qtbot.addWidget(tab)
    tab.show()
    qtbot.waitUntil(lambda: tab.service is not None and tab.current_pixels() is not None, timeout=30000)
    assert tab.originality_button.isEnabled()
    assert tab.originality_button.toolTip().endswith("(O)")
    tab.setFocus()
    qtbot.keyClick(tab, Qt.Key.Key_O)
    dialog = tab.findChild(OriginalityDialog)
    assert dialog is not None
    with qtbot.waitSignal(dialog.checked, timeout=30000):
        pass
    assert dialog.result.verdict in ("original", "close to a training face", "near copy")
    assert len(dialog.result.matches) == 5
    dialog.close()
    tab.shutdown()


def test_closing_the_dialog_during_a_first_use_build_returns_at_once_and_the_build_stops(qtbot, tiny_weights, tmp_path):
    import time

    weights = _copy_of(tiny_weights, tmp_path / "model")
    dialog = OriginalityDialog(_training_face(weights), weights, read_card(weights), cache_dir=tmp_path / "cache")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitSignal(dialog.worker.reported, timeout=30000).wait()
    started = time.monotonic()
    dialog.close()
    assert time.monotonic() - started < 0.5
    qtbot.waitUntil(lambda: running_checks() == 0, timeout=60000)
    assert not list((tmp_path / "cache").glob("index-*.npz"))  # stopped before it was written


def test_deleting_the_parent_during_a_search_does_not_abort_when_the_worker_is_still_running(
    qtbot, tiny_weights, tmp_path
):
    from PySide6.QtWidgets import QWidget

    weights = _copy_of(tiny_weights, tmp_path / "model")
    parent = QWidget()
    dialog = OriginalityDialog(
        _training_face(weights), weights, read_card(weights), cache_dir=tmp_path / "cache", parent=parent
    )
    qtbot.waitSignal(dialog.worker.reported, timeout=30000).wait()
    parent.deleteLater()  # deletes the dialog with it, without a close event
    qtbot.waitSignal(dialog.destroyed, timeout=5000).wait()
    qtbot.waitUntil(lambda: running_checks() == 0, timeout=60000)
