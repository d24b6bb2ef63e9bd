"""The Generate tab with a real tiny model, offscreen."""

import sys
from dataclasses import replace

import numpy as np
import PySide6
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from mangagan_app.core.face_recipe import MAX_SEED, png_bytes, read_png_recipe
from mangagan_app.gui.face_canvas import FaceCanvas
from mangagan_app.gui.generate_tab import GenerateTab


def _open_tab(qtbot, tmp_path, weights_dir):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    tab = GenerateTab(settings, weights_dir=weights_dir, data_dir=tmp_path / "data")
    qtbot.addWidget(tab)
    tab.resize(1200, 800)
    tab.show()
    return tab


def _settle(qtbot, tab):
    """Wait until the newest requested face is on the canvas."""
    qtbot.waitUntil(lambda: tab.current_pixels() is not None and tab._shown_token == tab._token, timeout=20000)
    return tab.current_pixels().copy()


@pytest.fixture
def tab(qtbot, tmp_path, tiny_weights):
    tab = _open_tab(qtbot, tmp_path, tiny_weights.parent)
    qtbot.waitUntil(lambda: tab.service is not None, timeout=30000)
    _settle(qtbot, tab)
    yield tab
    tab.shutdown()


def _other_hair_button(tab):
    current = tab.current_recipe().attributes(tab.service.vocabulary).choices["hair_colour"]
    box = next(b for b in tab.group_boxes if b.group.name == "hair_colour")
    value = next(v for v in box.group.values if v != current)
    return box.buttons[value], value


def test_ticking_an_attribute_changes_the_face_and_keeps_the_noise_when_clicked(qtbot, tab):
    before_recipe, before = tab.current_recipe(), _settle(qtbot, tab)
    button, value = _other_hair_button(tab)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    after = _settle(qtbot, tab)
    recipe = tab.current_recipe()
    assert recipe.attributes(tab.service.vocabulary).choices["hair_colour"] == value
    assert np.array_equal(recipe.noise, before_recipe.noise)
    assert not np.array_equal(after, before)


def test_slider_move_changes_the_face_and_undo_redo_restore_identical_pixels_when_pressed(qtbot, tab):
    original = _settle(qtbot, tab)
    tab.direction_sliders[0].slider.setValue(200)
    moved = _settle(qtbot, tab)
    assert tab.current_recipe().sliders[0] == 2.0 and not np.array_equal(moved, original)
    button, _ = _other_hair_button(tab)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    ticked = _settle(qtbot, tab)
    qtbot.keyClick(tab, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(_settle(qtbot, tab), moved)
    qtbot.keyClick(tab, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(_settle(qtbot, tab), original)
    assert tab.direction_sliders[0].slider.value() == 0
    qtbot.keyClick(tab, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClick(tab, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert np.array_equal(_settle(qtbot, tab), ticked)


def test_export_then_open_restores_identical_pixels_when_the_png_is_reopened(qtbot, tab, tmp_path):
    tab.set_seed(1234)
    tab.direction_sliders[1].slider.setValue(-150)
    face = _settle(qtbot, tab)
    tab.scale_box.setValue(3)
    path = tmp_path / "face.png"
    with qtbot.waitSignal(tab.saved, timeout=20000):
        tab.export_png(path)
    with Image.open(path) as im:
        assert im.size == (3 * face.shape[1], 3 * face.shape[0])
    assert read_png_recipe(path) == tab.current_recipe()
    qtbot.keyClick(tab, Qt.Key.Key_R)
    assert not np.array_equal(_settle(qtbot, tab), face)
    assert tab.open_png(path)
    assert np.array_equal(_settle(qtbot, tab), face)
    assert tab.seed_box.value() == 1234 and tab.direction_sliders[1].slider.value() == -150


def test_a_png_whose_seed_is_beyond_the_seed_box_opens_and_draws_its_face(qtbot, tab, tmp_path):
    # Made by a version whose command line took seeds up to 2^63 - 1.
    tab.set_seed(1234)
    face = _settle(qtbot, tab)
    with qtbot.waitSignal(tab.saved, timeout=20000):
        tab.export_png(tmp_path / "face.png")
    recipe = replace(read_png_recipe(tmp_path / "face.png"), seed=MAX_SEED * 4)
    (tmp_path / "big.png").write_bytes(png_bytes(Image.new("RGB", (8, 8)), recipe, tab.service.vocabulary))
    tab.set_seed(78)
    assert not np.array_equal(_settle(qtbot, tab), face)
    assert tab.open_png(tmp_path / "big.png")
    assert np.array_equal(_settle(qtbot, tab), face)  # the recipe keeps its noise; the seed only names it
    assert tab.current_recipe().seed == MAX_SEED * 4 and tab.seed_box.text() == "Seed —"


def test_dropping_an_exported_png_restores_its_face_and_the_grid_sheet_is_written_when_exported(qtbot, tab, tmp_path):
    tab.set_seed(77)
    face = _settle(qtbot, tab)
    with qtbot.waitSignal(tab.saved, timeout=20000):
        tab.export_png(tmp_path / "dropped.png")
    tab.set_seed(78)
    assert not np.array_equal(_settle(qtbot, tab), face)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "dropped.png"))])
    drop = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    tab.dropEvent(drop)
    assert np.array_equal(_settle(qtbot, tab), face)
    tab.scale_box.setValue(1)
    with qtbot.waitSignal(tab.saved, timeout=20000):
        tab.export_grid_sheet(tmp_path / "sheet.png")
    side = face.shape[0]
    with Image.open(tmp_path / "sheet.png") as im:
        assert im.size == (4 * (side + 2) + 2, 4 * (side + 2) + 2)


def test_foreign_png_is_refused_with_a_message_when_opened(qtbot, tab, tmp_path):
    plain = tmp_path / "sketch.png"
    Image.new("RGB", (16, 16), "white").save(plain)
    before = tab.current_recipe()
    with qtbot.waitSignal(tab.status_message) as message:
        assert not tab.open_png(plain)
    assert "sketch.png holds no MangaGAN face parameters" in message.args[0]
    assert tab.current_recipe() == before


def test_morph_endpoints_equal_a_and_b_when_t_is_zero_and_one(qtbot, tab, tmp_path):
    a = _settle(qtbot, tab)
    tab.set_morph_end("a", tab.current_recipe())
    tab.set_seed(99)
    b = _settle(qtbot, tab)
    tab.set_morph_end("b", tab.current_recipe())
    tab.set_morph_t(0.5)
    middle = _settle(qtbot, tab)
    tab.set_morph_t(0.0)
    assert np.array_equal(_settle(qtbot, tab), a)
    tab.set_morph_t(1.0)
    assert np.array_equal(_settle(qtbot, tab), b)
    assert not np.array_equal(middle, a) and not np.array_equal(middle, b)
    tab.frames_box.setValue(4)
    tab.scale_box.setValue(2)
    with qtbot.waitSignal(tab.saved, timeout=20000):
        tab.export_morph_gif(tmp_path / "morph.gif")
    with Image.open(tmp_path / "morph.gif") as gif:
        assert gif.n_frames == 6 and gif.size == (2 * a.shape[1], 2 * a.shape[0])  # 4 frames + 2 back


def test_variation_click_makes_it_current_when_picked(qtbot, tab):
    qtbot.waitUntil(lambda: tab._grid_pixels is not None, timeout=20000)
    grid_face = tab._grid_pixels[5].copy()
    qtbot.mouseClick(tab.grid_buttons[5], Qt.MouseButton.LeftButton)
    assert np.array_equal(_settle(qtbot, tab), grid_face)


def test_favourite_is_kept_when_the_tab_is_reopened(qtbot, tab, tmp_path, tiny_weights):
    qtbot.keyClick(tab, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    starred = tab.current_recipe()
    assert tab.star_button.isChecked()
    qtbot.waitUntil(lambda: tab.favourites_strip.count() == 1, timeout=20000)
    tab.shutdown()
    again = _open_tab(qtbot, tmp_path, tiny_weights.parent)
    qtbot.waitUntil(lambda: again.service is not None, timeout=30000)
    qtbot.waitUntil(lambda: again.favourites_strip.count() == 1, timeout=20000)
    assert again.session.favourites.all()[0].recipe == starred
    again.shutdown()


def test_tooltips_name_the_shortcuts_when_hovered(tab):
    assert tab.randomize_button.toolTip().endswith("(R)")
    assert "Ctrl+Z" in tab.undo_button.toolTip() and "Ctrl+Shift+Z" in tab.redo_button.toolTip()
    assert "Ctrl+S" in tab.export_button.toolTip()


def test_missing_model_is_explained_when_the_weights_folder_is_empty(qtbot, tmp_path):
    empty = tmp_path / "weights"
    empty.mkdir()
    tab = _open_tab(qtbot, tmp_path, empty)
    assert tab.service is None
    assert "No model yet" in tab.canvas._message and str(empty) in tab.canvas._message
    assert not tab.randomize_button.isEnabled()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12")
def test_repainting_the_canvas_keeps_none_alive_when_painted_many_times(qtbot):
    canvas = FaceCanvas()
    qtbot.addWidget(canvas)
    canvas.show()
    before = sys.getrefcount(None)
    for _ in range(200):
        canvas.repaint()
    lost = before - sys.getrefcount(None)
    assert lost < 50, (
        f"{lost} references to None lost in 200 paints: this Qt for Python "
        f"({PySide6.__version__}) aborts the app after a few thousand paints; use 6.11.3"
    )


def test_randomize_keeps_the_noise_and_fixed_groups_when_noise_is_locked(qtbot, tab):
    before = tab.current_recipe()
    hair = before.attributes(tab.service.vocabulary).choices["hair_colour"]
    next(b for b in tab.group_boxes if b.group.name == "hair_colour").random_box.setChecked(False)
    tab.lock_noise.setChecked(True)
    for _ in range(3):
        qtbot.keyClick(tab, Qt.Key.Key_R)
        after = tab.current_recipe()
        assert np.array_equal(after.noise, before.noise)
        assert after.attributes(tab.service.vocabulary).choices["hair_colour"] == hair
    tab.lock_noise.setChecked(False)
    qtbot.keyClick(tab, Qt.Key.Key_R)
    assert not np.array_equal(tab.current_recipe().noise, before.noise)


def test_direction_name_is_kept_for_the_model_when_renamed_and_reopened(qtbot, tab, tmp_path, tiny_weights):
    edit = tab.direction_sliders[2].name_edit
    edit.setText("Hair length")
    edit.editingFinished.emit()
    tab.shutdown()
    again = _open_tab(qtbot, tmp_path, tiny_weights.parent)
    qtbot.waitUntil(lambda: again.service is not None, timeout=30000)
    assert again.direction_sliders[2].name_edit.text() == "Hair length"
    assert again.direction_sliders[3].name_edit.text() == "Direction 4"
    again.shutdown()


def test_copy_puts_the_face_at_the_export_size_on_the_clipboard_when_pressed(qtbot, tab):
    face = _settle(qtbot, tab)
    tab.scale_box.setValue(2)
    qtbot.keyClick(tab, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    image = QApplication.clipboard().image()
    assert (image.width(), image.height()) == (2 * face.shape[1], 2 * face.shape[0])
    assert image.pixelColor(0, 0).getRgb()[:3] == tuple(int(c) for c in face[0, 0])


def test_attribute_tooltips_say_how_often_the_shipped_model_obeys_them_as_measured_in_its_card(qtbot, tmp_path):
    from mangagan_app.config import WEIGHTS_DIR
    from mangagan_app.ml.checkpoint import read_card

    tab = _open_tab(qtbot, tmp_path, WEIGHTS_DIR)
    qtbot.waitUntil(lambda: tab.service is not None, timeout=60000)
    measured = read_card(WEIGHTS_DIR / f"{tab.service.name}.safetensors")["metrics"]["attribute_values"]
    tags = next(b for b in tab.group_boxes if b.group.name == "tags")
    assert f"{100 * measured['hat']:.0f} % of the faces asked for it" in tags.buttons["hat"].toolTip()
    assert "Memorisation" in tab.model_label.toolTip()
    tab.shutdown()


def _switch_with_the_model_menu(qtbot, tab, weights):
    """Choose ``weights`` in the Model… button's menu and wait for its first face."""

    def choose():
        next(a for a in tab.model_menu.actions() if a.text() == weights.stem).trigger()
        tab.model_menu.close()

    QTimer.singleShot(300, choose)  # inside the menu's own event loop, once it is shown
    with qtbot.waitSignal(
        tab.status_message, timeout=60000, check_params_cb=lambda m: m.startswith(f"Model {weights.stem}:")
    ):
        qtbot.mouseClick(tab.model_button, Qt.MouseButton.LeftButton)
    _settle(qtbot, tab)


def _assert_every_control_works(qtbot, tab, name):
    assert tab.service.name == name and name in tab.model_label.text()
    assert tab.canvas.image() is not None and tab.canvas._message == ""
    controls = (tab.reset_sliders_button, tab.variety, tab.randomize_button, *tab.direction_sliders)
    # Rows added to a shown panel are shown once the event loop has run.
    qtbot.waitUntil(lambda: all(w.isVisibleTo(tab) and w.isEnabled() for w in controls), timeout=5000)
    assert len(tab.direction_sliders) == len(tab.service.directions)
    assert [b.group.name for b in tab.group_boxes] == [g.name for g in tab.service.vocabulary.groups]
    tab.direction_sliders[0].slider.setValue(120)
    _settle(qtbot, tab)
    qtbot.mouseClick(tab.reset_sliders_button, Qt.MouseButton.LeftButton)
    assert all(row.slider.value() == 0 for row in tab.direction_sliders)
    assert tab.current_recipe().model_sha256 == tab.service.sha256


def test_switching_models_twice_and_back_keeps_every_control_and_the_history(qtbot, tab, tmp_path, tiny_weights):
    import shutil

    from mangagan_app.config import WEIGHTS_DIR
    from mangagan_app.ml.checkpoint import models_in

    # The shipped model, as if sent from the Train tab: the menu offers it beside the default one.
    (tmp_path / "data" / "models").mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(models_in(WEIGHTS_DIR)[0].with_suffix(suffix), tmp_path / "data" / "models")
    shipped = next((tmp_path / "data" / "models").glob("*.safetensors"))
    assert tab.model_choices() == [tiny_weights, shipped]
    tab.set_seed(4242)
    qtbot.mouseClick(_other_hair_button(tab)[0], Qt.MouseButton.LeftButton)
    _settle(qtbot, tab)
    tiny_history = [e.label for e in tab.history.entries]
    tiny_face = tab.current_recipe()
    assert tab.history_strip.count() == len(tiny_history) == 3

    _switch_with_the_model_menu(qtbot, tab, shipped)
    _assert_every_control_works(qtbot, tab, shipped.stem)
    # The shipped model draws the character that was on the canvas: same noise and attributes.
    first = tab.history.entries[0].recipe
    assert np.array_equal(first.noise, tiny_face.noise) and np.array_equal(first.condition, tiny_face.condition)
    shipped_history = [e.label for e in tab.history.entries]

    _switch_with_the_model_menu(qtbot, tab, tiny_weights)
    assert [e.label for e in tab.history.entries][:3] == tiny_history
    assert tab.history_strip.count() == len(tab.history.entries)
    assert tab.history.entries[2].recipe == tiny_face
    _assert_every_control_works(qtbot, tab, tiny_weights.stem)

    _switch_with_the_model_menu(qtbot, tab, shipped)
    _assert_every_control_works(qtbot, tab, shipped.stem)
    assert [e.label for e in tab.history.entries][: len(shipped_history)] == shipped_history
    assert tab.history_strip.count() == len(tab.history.entries)
    qtbot.keyClick(tab, Qt.Key.Key_R)
    assert tab.current_recipe().model_sha256 == tab.service.sha256


def _turn_wheel(widget, notches: int) -> None:
    """Turn the mouse wheel ``notches`` over the middle of ``widget`` (negative: towards the user)."""
    middle = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(
        middle,
        QPointF(widget.mapToGlobal(middle.toPoint())),
        QPoint(0, 0),
        QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)


def test_the_wheel_over_an_unfocused_slider_scrolls_the_panel_and_moves_it_only_when_focused(qtbot, tab):
    tab.resize(1200, 600)  # the panel is taller than the window: it scrolls
    bar = tab.scroll.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=5000)
    bar.setValue(0)
    edits = len(tab.history.entries)
    for slider in (tab.direction_sliders[2].slider, tab.variety, tab.morph_slider):
        before, top = slider.value(), bar.value()
        assert not slider.hasFocus()
        _turn_wheel(slider, -2)
        assert slider.value() == before and bar.value() > top
    assert not tab.scale_box.hasFocus()
    scale, top = tab.scale_box.value(), bar.value()
    _turn_wheel(tab.scale_box, 1)
    assert tab.scale_box.value() == scale and bar.value() < top
    assert len(tab.history.entries) == edits  # the face did not change

    slider = tab.direction_sliders[2].slider
    tab.activateWindow()
    slider.setFocus()
    qtbot.waitUntil(slider.hasFocus, timeout=5000)
    top = bar.value()
    _turn_wheel(slider, 2)
    assert slider.value() != 0 and bar.value() == top
    assert tab.current_recipe().sliders[2] == slider.value() / 100


def test_the_seed_box_shows_the_largest_seed_whole_when_the_window_is_narrow(qtbot, tab):
    from mangagan_app.gui.generate_tab import MAX_SEED

    tab.set_seed(MAX_SEED)
    tab.resize(tab.minimumSizeHint().width(), 700)
    qtbot.waitUntil(lambda: tab.width() == tab.minimumSizeHint().width(), timeout=5000)
    edit = tab.seed_box.lineEdit()
    assert edit.text() == f"Seed {MAX_SEED}"
    assert edit.fontMetrics().horizontalAdvance(edit.text()) <= edit.contentsRect().width() - 4


def test_named_sliders_come_first_under_their_names_and_move_the_face(qtbot, tmp_path, named_tiny_weights):
    tab = _open_tab(qtbot, tmp_path, named_tiny_weights.parent)
    qtbot.waitUntil(lambda: tab.service is not None, timeout=30000)
    before = _settle(qtbot, tab)
    first = tab.direction_sliders[0]
    assert first.name_edit.text() == "Eye size" and first.index == len(tab.service.directions) - 1
    assert [h.text() for h in tab.slider_headings] == ["Named", "Found by exploring the model"]
    assert tab.direction_sliders[1].name_edit.text() == "Direction 1"
    first.slider.setValue(first.slider.maximum())
    after = _settle(qtbot, tab)
    assert tab.current_recipe().slider(first.index) == 3.0 and not np.array_equal(before, after)
    assert "1 named slider and 12 more" in tab.model_label.text()
    tab.shutdown()


def test_a_long_slider_name_is_shown_whole(qtbot, tmp_path, named_tiny_weights):
    import json

    card_path = named_tiny_weights.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["named_sliders"]["sliders"][0]["name"] = "Background lightness"
    card_path.write_text(json.dumps(card))
    tab = _open_tab(qtbot, tmp_path, named_tiny_weights.parent)
    qtbot.waitUntil(lambda: tab.service is not None, timeout=30000)
    field = tab.direction_sliders[0].name_edit
    assert field.text() == "Background lightness"
    assert field.width() >= field.fontMetrics().horizontalAdvance(field.text())
    assert {row.name_edit.width() for row in tab.direction_sliders} == {field.width()}
    tab.shutdown()


def test_an_export_that_cannot_be_written_says_why_and_the_tab_goes_on(qtbot, tab, tmp_path):
    (tmp_path / "page.txt").write_text("a file, not a folder")
    with qtbot.waitSignal(
        tab.status_message, timeout=20000, check_params_cb=lambda m: m.startswith("Could not save")
    ) as said:
        tab.export_png(tmp_path / "page.txt" / "face.png")
    assert said.args[0] == "Could not save face.png: Not a directory"
    with qtbot.waitSignal(tab.saved, timeout=20000):
        tab.export_png(tmp_path / "face.png")
