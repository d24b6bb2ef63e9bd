"""``mangagan-studio``: start the window.

Tracebacks go to a log file (Help → About names it); the user sees a plain
sentence in the status bar or a dialog.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import traceback
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox

from mangagan_app import __version__
from mangagan_app.config import APP_ICON

ORGANISATION = "MangaGAN"
APPLICATION = "MangaGAN Studio"

log = logging.getLogger(__name__)


def app_data_dir() -> Path:
    """The user's data folder for the app (runs, exported models, favourites, the log), created if needed."""
    folder = Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_file_path() -> Path:
    return app_data_dir() / "mangagan-studio.log"


def _configure_logging() -> Path:
    path = log_file_path()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.FileHandler(path, encoding="utf-8")],
    )
    return path


def _install_excepthook(log_path: Path) -> None:
    def report(exc_type, exc, tb):
        log.error("unhandled error\n%s", "".join(traceback.format_exception(exc_type, exc, tb)))
        QMessageBox.critical(
            None,
            APPLICATION,
            f"Something went wrong: {exc}\n\nThe details were written to {log_path}.",
        )

    sys.excepthook = report


def create_application(argv: list[str]) -> QApplication:
    app = QApplication.instance() or QApplication(argv)
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationVersion(__version__)
    app.setWindowIcon(QIcon(str(APP_ICON)))
    return app


def main(argv: list[str] | None = None) -> int:
    # A frozen (PyInstaller) build starts the crop worker processes by running this
    # executable again; freeze_support() turns those runs into workers, not windows.
    multiprocessing.freeze_support()
    argv = sys.argv if argv is None else argv
    if "--self-test" in argv[1:]:
        from mangagan_app.gui.self_test import run_self_test

        return run_self_test(argv[1:])
    app = create_application(argv)
    log_path = _configure_logging()
    _install_excepthook(log_path)

    from mangagan_app.gui.main_window import MainWindow

    window = MainWindow(QSettings(), log_path=log_path)
    window.show()
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
