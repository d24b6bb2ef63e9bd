"""The one QApplication, named so that QSettings and the data folder find the user's things."""

from __future__ import annotations

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from mangagan_app import __version__
from mangagan_app.config import APP_ICON

ORGANISATION = "MangaGAN"
APPLICATION = "MangaGAN Studio"


def create_application(argv: list[str]) -> QApplication:
    app = QApplication.instance() or QApplication(argv)
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationVersion(__version__)
    app.setWindowIcon(QIcon(str(APP_ICON)))
    return app
