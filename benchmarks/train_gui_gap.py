"""The window's largest event-loop gap while the Train tab trains (goal: <= 100 ms).

A 5 ms QTimer runs on the GUI thread; every gap between two of its ticks beyond
the interval is time the window could not repaint or take input. The same timer
is first measured for the same duration with no training (the baseline), then
while the tab trains on sketchbook faces in its QThread.

    python benchmarks/train_gui_gap.py [--seconds 30] [--faces 512] [--width 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PySide6.QtCore import QSettings, QTimer  # noqa: E402

from mangagan_app.core.sketchbook.dataset import write_sketchbook  # noqa: E402
from mangagan_app.gui.application import create_application  # noqa: E402
from mangagan_app.gui.main_window import MainWindow  # noqa: E402

INTERVAL_MS = 5


def measure_gaps(app, seconds: float) -> np.ndarray:
    """Milliseconds between consecutive ticks of a 5 ms timer over ``seconds``."""
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(INTERVAL_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    QTimer.singleShot(int(seconds * 1000), app.quit)
    app.exec()
    timer.stop()
    return np.diff(np.array(ticks)) * 1000.0


def describe(name: str, gaps: np.ndarray) -> str:
    return (
        f"{name:<22} ticks {len(gaps):>6}  median {np.median(gaps):6.1f} ms  "
        f"p99 {np.percentile(gaps, 99):6.1f} ms  max {gaps.max():6.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--faces", type=int, default=512)
    parser.add_argument("--width", type=int, default=32)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mangagan-gap-"))
    write_sketchbook(work / "faces", args.faces, size=64, seed=1)
    app = create_application(sys.argv)
    window = MainWindow(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window.resize(1280, 820)
    window.show()
    tab = window.train_tab
    window.tabs.setCurrentWidget(tab)

    idle = measure_gaps(app, args.seconds)

    tab.use_folder.setChecked(True)
    tab.folder_edit.setText(str(work / "faces"))
    tab.width_spin.setValue(args.width)
    tab.epochs_spin.setValue(10_000)
    tab.run_edit.setText(str(work / "run"))
    tab.start(resume=False)
    deadline = time.monotonic() + 120
    while (tab.last_progress is None or tab.last_progress.phase != "training") and time.monotonic() < deadline:
        app.processEvents()  # benchmark harness only: wait for the run to reach its training phase
        time.sleep(0.01)
    training = measure_gaps(app, args.seconds)
    reached = tab.last_progress.step if tab.last_progress else 0
    tab.wait_for_worker()

    print(
        f"machine: {os.cpu_count()} cores; width {args.width}; {args.faces} faces at 64 px; "
        f"{args.seconds:.0f} s each; training had reached step {reached} at the end"
    )
    print(describe("idle window", idle))
    print(describe("while training", training))
    print(
        f"largest gap while training: {training.max():.1f} ms (goal <= 100 ms); "
        f"ratio of p99 to idle p99: {np.percentile(training, 99) / np.percentile(idle, 99):.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
