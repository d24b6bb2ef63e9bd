from PySide6.QtCore import QSettings

from mangagan_app.gui.main_window import TAB_NAMES, MainWindow


def _window(qtbot, tmp_path):
    window = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    return window


def test_main_window_opens_with_three_tabs_when_started(qtbot, tmp_path):
    window = _window(qtbot, tmp_path)
    window.show()
    qtbot.waitExposed(window)
    assert window.windowTitle() == "MangaGAN Studio"
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == list(TAB_NAMES)
    assert not window.windowIcon().isNull()


def test_geometry_and_tab_restored_when_window_reopened(qtbot, tmp_path):
    first = _window(qtbot, tmp_path)
    first.show()
    first.resize(760, 560)
    first.tabs.setCurrentIndex(2)
    first.close()

    second = _window(qtbot, tmp_path)
    second.show()
    assert second.tabs.currentIndex() == 2
    assert (second.width(), second.height()) == (760, 560)


def test_about_names_the_versions(qtbot, tmp_path):
    text = _window(qtbot, tmp_path).about_text()
    for name in ("Python", "torch", "Qt for Python", "Pillow", "animeface"):
        assert name in text
