"""The crop run on a QThread: :func:`crop_sources` with its callbacks turned into signals.

The detector itself runs in the run's worker processes; this thread only feeds
them and writes the catalogue, so the window stays responsive.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QThread, Signal

from mangagan_app.config import CropConfig
from mangagan_app.core.cropping.pipeline import crop_sources

log = logging.getLogger(__name__)


class CropWorker(QThread):
    """Crops ``sources`` into ``dataset_dir``; cancel with ``requestInterruption()``.

    Signals: ``progress(done, total, path)`` per image, ``succeeded(CropSummary)``
    at the end (also after a cancel, with ``stopped`` set), ``failed(message)``
    when the run itself could not go on (dataset folder unwritable, damaged
    catalogue). ``QThread.started`` / ``finished`` bracket the run.
    """

    progress = Signal(int, int, str)
    succeeded = Signal(object)
    failed = Signal(str)

    def __init__(self, sources: Sequence[str], dataset_dir: str | Path, cfg: CropConfig, parent=None):
        super().__init__(parent)
        self.sources = list(sources)
        self.dataset_dir = Path(dataset_dir)
        self.cfg = cfg

    def run(self) -> None:
        try:
            summary = crop_sources(
                self.sources,
                self.dataset_dir,
                self.cfg,
                progress=self.progress.emit,
                should_stop=self.isInterruptionRequested,
            )
        except Exception as exc:  # noqa: BLE001 - reported to the user as a sentence, logged in full
            log.exception("crop run failed")
            self.failed.emit(f"Cropping stopped: {exc}")
            return
        self.succeeded.emit(summary)
