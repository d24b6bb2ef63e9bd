""" "Check originality": the current face beside its closest training faces, with a verdict.

The search (``ml.originality.check_originality``) runs on a function worker: it loads
the tagger and the model's feature index — or builds the index from the training
folder on first use, reporting progress — then finds the nearest training faces. The
dialog only shows what the worker sends.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from mangagan_app.gui.face_canvas import qimage_from_array
from mangagan_app.gui.function_worker import create_worker, running
from mangagan_app.ml.originality import OriginalityResult, check_originality

log = logging.getLogger(__name__)

MATCHES = 5
_VERDICT_COLOURS = {"original": "#2e7d32", "close to a training face": "#ef6c00", "near copy": "#c62828"}


def _pixmap(pixels: np.ndarray, side: int) -> QPixmap:
    return QPixmap.fromImage(qimage_from_array(pixels)).scaled(
        side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation
    )


class OriginalityDialog(QDialog):
    """Shows the face, a progress bar while searching, then the verdict and the closest faces.

    ``checked(result)`` fires when the verdict is shown; ``result`` holds it too.
    Closing the dialog stops the search.
    """

    checked = Signal(object)

    def __init__(
        self,
        pixels: np.ndarray,
        weights: Path,
        card: dict,
        *,
        cache_dir: Path | None = None,
        tagger_path: Path | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.setWindowTitle("Check originality")
        self.result: OriginalityResult | None = None
        self.error: str | None = None
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.face_label = QLabel()
        self.face_label.setPixmap(_pixmap(pixels, 192))
        self.face_label.setToolTip("The face being checked")
        top.addWidget(self.face_label)
        text = QVBoxLayout()
        self.verdict_label = QLabel("Searching the training set…")
        font = self.verdict_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        self.verdict_label.setFont(font)
        self.explanation_label = QLabel("")
        self.explanation_label.setWordWrap(True)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 0)
        text.addWidget(self.verdict_label)
        text.addWidget(self.explanation_label)
        text.addWidget(self.progress_bar)
        text.addStretch(1)
        top.addLayout(text, 1)
        layout.addLayout(top)
        layout.addWidget(QLabel("Closest training faces (distance in the tagger's feature space):"))
        self.matches_grid = QGridLayout()
        layout.addLayout(self.matches_grid)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(620, 420)

        # The worker outlives the dialog if need be (it may be closed before the search ends):
        # create_worker keeps it referenced until it has finished.
        self.worker = create_worker(
            check_originality,
            np.ascontiguousarray(pixels, np.uint8),
            Path(weights),
            card,
            cache_dir=cache_dir,
            tagger_path=tagger_path,
            k=MATCHES,
            callbacks=("progress",),
            stoppable=True,
            connect={"reported": self._progress, "returned": self._show, "errored": self._failed},
        )
        self.destroyed.connect(self.worker.requestInterruption)

    def _progress(self, _callback: str, values: tuple) -> None:
        stage, done, total = values
        self.verdict_label.setText("Indexing the training set (first use)…")
        self.explanation_label.setText(f"{stage}: {done} of {total}")
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(done)

    def _show(self, found: tuple[OriginalityResult, list[np.ndarray | None]]) -> None:
        result, thumbs = found
        self.result = result
        self.progress_bar.hide()
        colour = _VERDICT_COLOURS.get(result.verdict, "black")
        self.verdict_label.setText(result.verdict.capitalize())
        self.verdict_label.setStyleSheet(f"color: {colour}")
        self.explanation_label.setText(result.explanation())
        for column, (match, thumb) in enumerate(zip(result.matches, thumbs, strict=True)):
            picture = QLabel()
            if thumb is None:
                picture.setText("(image not\navailable)")
            else:
                picture.setPixmap(_pixmap(thumb, 96))
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            picture.setToolTip(match.name)
            caption = QLabel(f"{column + 1}. {match.name}\ndistance {match.distance:.2f}")
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.matches_grid.addWidget(picture, 0, column)
            self.matches_grid.addWidget(caption, 1, column)
        self.checked.emit(result)

    def _failed(self, exc: Exception) -> None:
        self.error = message = str(exc) or exc.__class__.__name__
        self.progress_bar.hide()
        self.verdict_label.setText("Cannot check this face")
        self.explanation_label.setText(message)

    def done(self, code: int) -> None:
        self.stop()
        super().done(code)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        self.stop()
        super().closeEvent(event)

    def stop(self) -> None:
        """Ask the search to stop without waiting for it: an index build stops only between
        chunks, and reading 24k images is one chunk, so the worker finishes on its own."""
        self.worker.requestInterruption()


def running_checks() -> int:
    """How many originality searches are still running (their dialogs may be gone)."""
    return running(check_originality)
