"""One way to run a core/ml function off the GUI thread (superqt's ``create_worker``, reduced).

A job is a function, not a QThread subclass: ``create_worker(crop_sources, sources, folder,
cfg, callbacks=("progress",), stoppable=True, connect={...})`` runs it once on its own
thread. The function's callbacks become the ``reported(name, values)`` signal, its result
``returned(result)``, an exception ``errored(exc)`` (logged with its traceback first), and
``requestInterruption()`` reaches it as ``should_stop()``. A module-level set keeps every
running worker referenced until it has finished (Qt aborts on deleting a running QThread),
and quitting the application stops and waits for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from PySide6.QtCore import QCoreApplication, QThread, Signal

log = logging.getLogger(__name__)

_running: set[FunctionWorker] = set()


class FunctionWorker(QThread):
    """``fn(*args, **kwargs)`` once on this thread; see the module's description for the signals."""

    reported = Signal(str, tuple)  # (callback name, the values it was called with)
    returned = Signal(object)
    errored = Signal(object)

    def __init__(
        self, fn: Callable, args: tuple, kwargs: dict, *, callbacks: Iterable[str] = (), stoppable: bool = False
    ):
        super().__init__()
        self.fn = fn
        self.args = args
        self.kwargs = dict(kwargs)
        for name in callbacks:
            self.kwargs[name] = lambda *values, name=name: self.reported.emit(name, values)
        if stoppable:
            self.kwargs["should_stop"] = self.isInterruptionRequested

    def run(self) -> None:
        try:
            result = self.fn(*self.args, **self.kwargs)
        except Exception as exc:  # noqa: BLE001 - the receiver turns it into a sentence; the log keeps the rest
            log.exception("%s failed", getattr(self.fn, "__qualname__", self.fn))
            self.errored.emit(exc)
            return
        self.returned.emit(result)


def create_worker(
    fn: Callable,
    *args,
    callbacks: Iterable[str] = (),
    stoppable: bool = False,
    connect: dict[str, Callable] | None = None,
    **kwargs,
) -> FunctionWorker:
    """Start ``fn(*args, **kwargs)`` on a new thread and return its worker.

    ``callbacks`` names the keyword arguments of ``fn`` that report (e.g. ``progress``);
    with ``stoppable`` it gets ``should_stop``. ``connect`` maps signal names
    (``reported``, ``returned``, ``errored``, ``started``, ``finished``) to slots,
    connected before the thread starts so that no signal is missed.
    """
    worker = FunctionWorker(fn, args, kwargs, callbacks=callbacks, stoppable=stoppable)
    for signal, slot in (connect or {}).items():
        getattr(worker, signal).connect(slot)
    _running.add(worker)
    worker.finished.connect(lambda: _running.discard(worker))
    app = QCoreApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(worker.requestInterruption)
        app.aboutToQuit.connect(worker.wait)
    worker.start()
    return worker


def running(fn: Callable | None = None) -> int:
    """How many workers (running ``fn``, if given) have not finished yet."""
    return sum(1 for worker in _running if fn is None or worker.fn is fn)
