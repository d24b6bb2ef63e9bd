"""The training run on a QThread: ``ml.trainer.train`` with its callbacks turned into signals."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QThread, Signal

from mangagan_app.config import TrainingConfig
from mangagan_app.core.sketchbook.dataset import ensure_sketchbook
from mangagan_app.ml.trainer import TrainProgress, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SketchbookSource:
    """Train on ``count`` sketchbook faces, drawn into ``folder`` first if not there yet."""

    folder: Path
    count: int
    seed: int = 0


class TrainWorker(QThread):
    """Runs one training session; ``requestInterruption()`` stops it after the current step.

    Signals carry the trainer's own objects (``TrainProgress``, ``Preview``,
    ``TrainResult``); ``failed`` carries a sentence for the user, the traceback goes
    to the log.
    """

    progress = Signal(object)
    preview = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)

    def __init__(
        self,
        cfg: TrainingConfig,
        run_dir: Path,
        *,
        resume: bool,
        sketchbook: SketchbookSource | None = None,
        parent=None,
    ):
        super().__init__(parent)
        self.cfg = cfg
        self.run_dir = run_dir
        self.resume = resume
        self.sketchbook = sketchbook

    def run(self) -> None:
        try:
            if self.sketchbook is not None:
                drawn = ensure_sketchbook(
                    self.sketchbook.folder,
                    self.sketchbook.count,
                    size=self.cfg.resolution,
                    seed=self.sketchbook.seed,
                    should_stop=self.isInterruptionRequested,
                    progress=lambda done, total: self.progress.emit(TrainProgress("drawing", done, total)),
                )
                if drawn.stopped:
                    self.failed.emit("Stopped while drawing the sketchbook; nothing was trained.")
                    return
            result = train(
                self.cfg,
                self.run_dir,
                resume=self.resume,
                progress=self.progress.emit,
                should_stop=self.isInterruptionRequested,
                on_preview=self.preview.emit,
            )
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message in the window
            log.exception("training in %s failed", self.run_dir)
            self.failed.emit(str(exc) or exc.__class__.__name__)
            return
        self.succeeded.emit(result)
