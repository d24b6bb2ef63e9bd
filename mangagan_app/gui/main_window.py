"""The main window: Generate / Dataset / Train tabs, menus, status bar.

Window geometry and the last tab are kept in ``QSettings`` between runs.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QTabWidget, QWidget

from mangagan_app.config import APP_ICON
from mangagan_app.gui.settings_values import setting, unreadable_settings

TAB_NAMES = ("Generate", "Dataset", "Train")


class PlannedTab(QLabel):
    """A tab whose capability has not landed yet: one line says what it will do."""

    def __init__(self, promise: str, parent: QWidget | None = None):
        super().__init__(promise, parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings, *, log_path: Path | None = None):
        super().__init__()
        self.settings = settings
        self.log_path = log_path
        self.setWindowTitle("MangaGAN Studio")
        self.setWindowIcon(QIcon(str(APP_ICON)))
        self.setMinimumSize(720, 520)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for name, widget in self._build_tabs():
            self.tabs.addTab(widget, name)
        self.train_tab.model_exported.connect(self._open_in_generate)
        self.setCentralWidget(self.tabs)
        self._build_menus()
        self.statusBar().showMessage("Ready", 3000)
        self._restore_state()

    def _build_tabs(self) -> list[tuple[str, QWidget]]:
        return [
            ("Generate", self._build_generate_tab()),
            ("Dataset", self._build_dataset_tab()),
            ("Train", self._build_train_tab()),
        ]

    def _build_generate_tab(self) -> QWidget:
        from mangagan_app.gui.generate_tab import GenerateTab

        self.generate_tab = GenerateTab(self.settings)
        self.generate_tab.status_message.connect(self.show_status)
        return self.generate_tab

    def _open_in_generate(self, weights) -> None:
        self.generate_tab.load_model(weights)
        self.tabs.setCurrentWidget(self.generate_tab)

    def _build_train_tab(self) -> QWidget:
        from mangagan_app.gui.train_tab import TrainTab

        self.train_tab = TrainTab(self.settings)
        self.train_tab.status_message.connect(self.show_status)
        return self.train_tab

    def _build_dataset_tab(self) -> QWidget:
        from mangagan_app.gui.dataset_tab import DatasetTab

        self.dataset_tab = DatasetTab(self.settings)
        return self.dataset_tab

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.setToolTip(f"Quit ({quit_action.shortcut().toString()})")
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

        help_menu = self.menuBar().addMenu("&Help")
        about_action = QAction("&About MangaGAN Studio", self)
        about_action.triggered.connect(self.show_about)
        help_menu.addAction(about_action)

    def about_text(self) -> str:
        from mangagan_app.environment import environment_report

        rows = "".join(f"<tr><td>{name}</td><td>{value}</td></tr>" for name, value in environment_report())
        log_line = f"<p>Log file: {self.log_path}</p>" if self.log_path else ""
        return (
            "<h3>MangaGAN Studio</h3>"
            "<p>Character design for anime and manga artists with a conditional GAN, offline.</p>"
            f"<table>{rows}</table>{log_line}"
        )

    def show_about(self) -> None:
        QMessageBox.about(self, "About MangaGAN Studio", self.about_text())

    def show_status(self, message: str) -> None:
        """A plain-words message (often an error) in the status bar, kept until the next one."""
        self.statusBar().showMessage(message)

    def _restore_state(self) -> None:
        geometry = setting(self.settings, "window/geometry", QByteArray())
        if geometry.isEmpty() or not self.restoreGeometry(geometry):
            self.resize(1100, 760)
        tab = setting(self.settings, "window/tab", 0)
        if 0 <= tab < self.tabs.count():
            self.tabs.setCurrentIndex(tab)
        bad = unreadable_settings(self.settings)
        if bad:
            self.show_status(
                f"Some remembered settings were unreadable and reset to defaults: {', '.join(bad)} "
                f"(in {self.settings.fileName()})"
            )

    def save_state(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/tab", self.tabs.currentIndex())
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        # A running training stops after its current step and saves, so closing loses nothing.
        self.train_tab.wait_for_worker()
        self.generate_tab.shutdown()
        self.save_state()
        self.dataset_tab.shutdown()
        super().closeEvent(event)
