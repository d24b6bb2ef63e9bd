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

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from mangagan_app.gui.application import APPLICATION, create_application
from mangagan_app.gui.paths import log_file_path

log = logging.getLogger(__name__)


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
