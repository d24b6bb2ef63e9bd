"""Running sketchbook work in spawn-context worker processes, chunk by chunk.

Drawing holds the GIL, so the work runs in processes. Results come back per chunk
and are returned in submission order, so the output never depends on how many
workers ran or which finished first.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]


def ignore_interrupts() -> None:
    """Worker-process initialiser: Ctrl+C is the parent's to handle (it stops the run cleanly)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_chunks(
    task: Callable[..., list],
    chunks: Sequence[tuple[Any, ...]],
    *,
    workers: int,
    total: int,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> tuple[list, bool]:
    """Call ``task(*chunk)`` for each chunk; return (all records in chunk order, stopped).

    ``task`` must be a module-level function returning a list of records, one per
    item; ``progress(done_items, total)`` is called as chunks finish. Once
    ``should_stop()`` is true no new chunk starts; finished chunks are kept. An
    exception in a task cancels the rest and propagates.
    """
    results: dict[int, list] = {}
    stopped = False

    def done_items() -> int:
        return sum(len(r) for r in results.values())

    def stop_requested() -> bool:
        return bool(should_stop and should_stop())

    if workers <= 1:
        for i, chunk in enumerate(chunks):
            if stop_requested():
                stopped = True
                break
            results[i] = task(*chunk)
            if progress:
                progress(done_items(), total)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=ignore_interrupts) as pool:
            queue = list(enumerate(chunks))
            pending: dict[Future, int] = {}
            try:
                while queue or pending:
                    while queue and len(pending) < workers * 2 and not stopped:
                        i, chunk = queue.pop(0)
                        pending[pool.submit(task, *chunk)] = i
                    finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        results[pending.pop(fut)] = fut.result()
                    if progress and finished:
                        progress(done_items(), total)
                    if not stopped and stop_requested():
                        stopped = True
                        queue.clear()
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
    return [record for i in sorted(results) for record in results[i]], stopped
