"""The artist's whole path in the real window: illustrations with a tag of their own → crop →
review → fine-tune the shipped model with the data's own tags → Generate has the tag as a
checkbox, ticking it changes the face → export → the PNG restores."""

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt

from mangagan_app.core.attributes import OWN_TAGS_GROUP
from mangagan_app.core.catalogue import Catalogue
from mangagan_app.core.face_recipe import read_png_recipe
from mangagan_app.core.sketchbook.scenes import write_scenes
from mangagan_app.gui.main_window import MainWindow
from mangagan_app.ml.checkpoint import read_card

OWN_TAG = "star_hair_clip"


def _illustrations(folder):
    """Sketchbook scenes with kohya sidecars, every other one naming the artist's own tag as people
    type it (a tag on every face would teach nothing to contrast it with, and is left out)."""
    write_scenes(folder, 8, seed=3)
    for i, scene in enumerate(sorted(folder.glob("scene_*.*"))):
        own = ", Star Hair Clip" if i % 2 == 0 else ""
        scene.with_suffix(".txt").write_text(f"1girl, highres{own}", encoding="utf-8")
    return folder


def _settle(qtbot, tab):
    qtbot.waitUntil(lambda: tab.current_pixels() is not None and tab._shown_token == tab._token, timeout=30_000)
    return tab.current_pixels().copy()


def test_own_tag_goes_from_sidecars_through_a_fine_tune_to_a_checkbox_that_changes_the_face(qtbot, tmp_path):
    art = _illustrations(tmp_path / "art")
    originals = {p: p.read_bytes() for p in art.iterdir()}
    window = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    generate = window.generate_tab
    qtbot.waitUntil(lambda: generate.service is not None, timeout=60_000)

    # Dataset tab: crop, then keep every face by keyboard.
    dataset_tab = window.dataset_tab
    window.tabs.setCurrentWidget(dataset_tab)
    dataset_tab.sources.add_paths([str(art)])
    dataset_tab.dataset_edit.setText(str(tmp_path / "dataset"))
    dataset_tab.workers_spin.setValue(1)
    dataset_tab.start_cropping()
    with qtbot.waitSignal(dataset_tab.worker.returned, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: dataset_tab.start_button.isEnabled())
    faces = dataset_tab.model.rowCount()
    assert faces >= 6
    dataset_tab.grid.setFocus()
    dataset_tab.grid.selectAll()
    qtbot.keyClick(dataset_tab.grid, Qt.Key.Key_K)
    with Catalogue(tmp_path / "dataset") as cat:
        records = cat.faces(cat.face_ids()).values()
        assert all(f.decision == "keep" for f in records)
        tagged_sources = {str(p) for p in art.glob("*.txt") if "Star Hair Clip" in p.read_text(encoding="utf-8")}
        # The sidecar's own tag reached exactly the crops of its illustrations.
        carried = {f.id: OWN_TAG in f.tags for f in records}
        wanted = {f.id: str(Path(f.source_path).with_suffix(".txt")) in tagged_sources for f in records}
        assert carried == wanted and any(carried.values()) and not all(carried.values())

    # Train tab: the reviewed dataset, started from the shipped model, the data's own tags learned.
    train_tab = window.train_tab
    window.tabs.setCurrentWidget(train_tab)
    train_tab.use_folder.setChecked(True)
    train_tab.folder_edit.setText(str(tmp_path / "dataset"))
    # A few dozen faces: the tab starts from the shipped model by itself.
    assert train_tab.start_from_combo.currentText().startswith("The shipped model")
    assert train_tab.init_edit.text().endswith("mangagan-sketchbook64.safetensors")
    assert train_tab.own_tags_check.isChecked()
    config = train_tab.config()
    assert (config.vocabulary, config.freeze_d, config.lr_g, config.lr_d) == ("auto", 2, 2e-5, 2e-5)
    train_tab.epochs_spin.setValue(30)
    train_tab.run_edit.setText(str(tmp_path / "run"))
    with qtbot.waitSignal(
        train_tab.status_message, timeout=600_000, check_params_cb=lambda m: m.startswith("Training finished")
    ):
        train_tab.start_button.click()
    qtbot.waitUntil(lambda: train_tab.use_button.isEnabled(), timeout=30_000)

    # Use in Generate: the window switches to the new model, whose card knows the tag.
    with qtbot.waitSignal(train_tab.model_exported, timeout=60_000) as exported:
        train_tab.use_button.click()
    weights = exported.args[0]
    assert OWN_TAG in [v for g in read_card(weights)["vocabulary"] for v in g["values"]]
    qtbot.waitUntil(lambda: generate.service is not None and generate.service.name == weights.stem, timeout=60_000)
    assert window.tabs.currentWidget() is generate
    own_box = next(b for b in generate.group_boxes if b.group.name == OWN_TAGS_GROUP)
    assert own_box.title() == "Your tags"
    checkbox = own_box.buttons[OWN_TAG]
    assert checkbox.text() == "star hair clip"
    before = _settle(qtbot, generate)
    if checkbox.isChecked():
        checkbox.click()
        before = _settle(qtbot, generate)
    checkbox.click()
    after = _settle(qtbot, generate)
    recipe = generate.current_recipe()
    assert OWN_TAG in recipe.attributes(generate.service.vocabulary).tags
    assert not np.array_equal(before, after)

    # Export, then open the PNG again: the same face, the tag still ticked.
    path = tmp_path / "my_character.png"
    with qtbot.waitSignal(generate.saved, timeout=30_000):
        generate.export_png(path)
    assert read_png_recipe(path) == recipe
    checkbox.click()
    assert not np.array_equal(_settle(qtbot, generate), after)
    assert generate.open_png(path)
    assert np.array_equal(_settle(qtbot, generate), after)
    assert checkbox.isChecked()
    assert {p: p.read_bytes() for p in art.iterdir()} == originals  # the illustrations are untouched
    dataset_tab.shutdown()
    generate.shutdown()
