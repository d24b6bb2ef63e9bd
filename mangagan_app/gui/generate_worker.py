"""Rendering off the GUI thread.

:class:`RenderWorker` keeps one pending request per kind ("face", "grid", ...); a
new request replaces an unstarted older one of the same kind, so while a slider is
dragged only the newest position is drawn and stale positions are dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from PySide6.QtCore import QThread, Signal

from mangagan_app.core.face_recipe import FaceRecipe
from mangagan_app.ml.generator_service import GeneratorService

log = logging.getLogger(__name__)


class RenderWorker(QThread):
    """Renders recipe batches with ``service``; ``rendered(kind, token, images, seconds)`` per
    batch (``images`` is a (B, H, W, 3) uint8 array, ``seconds`` the render time),
    ``failed(message)`` on an error."""

    rendered = Signal(str, int, object, float)
    failed = Signal(str)

    def __init__(self, service: GeneratorService, parent=None):
        super().__init__(parent)
        self.service = service
        self._pending: dict[str, tuple[int, list[FaceRecipe]]] = {}
        self._wake = threading.Condition()

    def request(self, kind: str, token: int, recipes: Sequence[FaceRecipe]) -> None:
        """Queue a render, replacing an unstarted request of the same ``kind``."""
        with self._wake:
            self._pending[kind] = (token, list(recipes))
            self._wake.notify()

    def stop(self) -> None:
        """Ask the loop to end and wait for it (a render in progress finishes first)."""
        self.requestInterruption()
        with self._wake:
            self._wake.notify()
        self.wait()

    def run(self) -> None:
        while not self.isInterruptionRequested():
            with self._wake:
                while not self._pending and not self.isInterruptionRequested():
                    self._wake.wait(0.5)
                # The current face goes first: it is what the artist is looking at.
                kind = "face" if "face" in self._pending else next(iter(self._pending), None)
                job = self._pending.pop(kind) if kind else None
            if job is None:
                continue
            token, recipes = job
            try:
                start = time.perf_counter()
                images = self.service.render(recipes)
            except Exception as exc:  # noqa: BLE001 - shown as a sentence, logged in full
                log.exception("render failed")
                self.failed.emit(f"Drawing the face failed: {exc}")
                continue
            self.rendered.emit(kind, token, images, time.perf_counter() - start)
