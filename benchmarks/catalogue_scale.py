"""The Dataset tab at scale: 200k faces in the catalogue vs a 2k baseline, in one run.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/catalogue_scale.py [--faces 200000] [--baseline 2000]

Each catalogue is built through the catalogue's own API (``plan`` + ``record``,
one transaction per source of 200 faces, near-duplicate lookup included) with
64 small crop files reused by every face. Then the real Dataset tab opens it
offscreen (window 1100×760) and the script prints, for each size:

1. build: seconds to record the faces;
2. first paint: from creating the tab (which opens the remembered dataset) until
   the grid has painted its first screen of thumbnails;
3. filter change: each filter (unreviewed, kept, rejected, all) chosen in the
   combo box → grid repainted, seconds;
4. scroll frames: random scroll-bar jumps across the whole list, then a long wheel
   scroll from the top (3 rows per frame, at most --frames, stopping at the end);
   per frame the scroll bar moves and the viewport repaints synchronously (new
   thumbnails are read then). Median / p95 / max in ms.

Then the ratio 200k / 2k for each figure: the grid should not care how many faces
the catalogue holds. Goal: first paint and filter < 1 s, scroll median < 50 ms.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PySide6.QtCore import QEvent, QObject, QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from mangagan_app.core.catalogue import Catalogue, FaceResult, SourceResult  # noqa: E402
from mangagan_app.core.sketchbook import render_face, sample_attributes  # noqa: E402
from mangagan_app.gui.dataset_tab import DatasetTab  # noqa: E402

FACES_PER_SOURCE = 200
CROP_FILES = 64
DECISIONS = ("unreviewed", "keep", "reject")


def build_catalogue(folder: Path, faces: int, seed: int = 0) -> float:
    """Record ``faces`` synthetic faces in a new catalogue in ``folder``; returns seconds."""
    rng = np.random.default_rng(seed)
    crops = folder / "crops"
    crops.mkdir(parents=True)
    for i in range(CROP_FILES):
        render_face(sample_attributes(rng), rng, 64).save(crops / f"shared_{i:02d}.png")
    started = time.perf_counter()
    with Catalogue(folder) as cat:
        sources = (faces + FACES_PER_SOURCE - 1) // FACES_PER_SOURCE
        # The sources need not exist: plan() records them and the results say what was found.
        jobs = cat.plan([folder / "sources" / f"page_{i:06d}.png" for i in range(sources)])
        left = faces
        for job in jobs:
            n = min(FACES_PER_SOURCE, left)
            left -= n
            hashes = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
            cat.record(
                SourceResult(
                    source_id=job.source_id,
                    path=job.path,
                    size=1,
                    mtime_ns=1,
                    sha256="0" * 64,
                    width=2000,
                    height=2000,
                    error=None,
                    faces=tuple(
                        FaceResult(
                            idx=k,
                            box=(10, 10, 50, 50),
                            square=(0, 0, 70, 70),
                            likelihood=float(rng.random()),
                            hair_rgb=(1, 2, 3),
                            eye_rgb=(4, 5, 6),
                            skin_rgb=(7, 8, 9),
                            crop_file=f"crops/shared_{int(rng.integers(CROP_FILES)):02d}.png",
                            crop_size=64,
                            tags=("blue_hair", "smile"),
                            tags_source="detector",
                            dhash=int(hashes[k]),
                        )
                        for k in range(n)
                    ),
                )
            )
        ids = cat.face_ids(order="source")
        # A review in progress: a third kept, a third rejected.
        chosen = rng.permutation(np.asarray(ids))[: 2 * len(ids) // 3]
        half = len(chosen) // 2
        cat.set_decisions({int(i): "keep" for i in chosen[:half]} | {int(i): "reject" for i in chosen[half:]})
    return time.perf_counter() - started


class _PaintWatch(QObject):
    """Counts paint events of one widget."""

    def __init__(self):
        super().__init__()
        self.paints = 0

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Paint:
            self.paints += 1
        return False


def _until_painted(app: QApplication, watch: _PaintWatch, timeout: float = 30.0) -> None:
    before, deadline = watch.paints, time.perf_counter() + timeout
    while watch.paints == before and time.perf_counter() < deadline:
        app.processEvents()


def _stats(seconds: list[float]) -> tuple[float, float, float]:
    ms = np.asarray(seconds) * 1000
    return float(np.median(ms)), float(np.percentile(ms, 95)), float(ms.max())


class _Clock:
    """Wall-clock and process-CPU seconds of a block: on a shared machine the CPU time
    is what the app itself spent, the wall clock what the user waited."""

    def __enter__(self) -> _Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def measure(app: QApplication, folder: Path, frames: int, jumps: int, seed: int = 1) -> dict[str, object]:
    """Open ``folder`` in a new Dataset tab and time first paint, filters and scrolling."""
    settings = QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)
    settings.setValue("dataset/folder", str(folder))
    settings.sync()
    watch = _PaintWatch()
    with _Clock() as first_paint:
        tab = DatasetTab(settings)
        tab.grid.viewport().installEventFilter(watch)
        tab.resize(1100, 760)
        tab.show()
        _until_painted(app, watch)

    filters = {}
    for index in (1, 2, 3, 0):
        with _Clock() as clock:
            tab.filter_combo.setCurrentIndex(index)
            _until_painted(app, watch)
        filters[tab.filter_combo.currentText()] = clock

    bar = tab.grid.verticalScrollBar()
    # The batched layout places items a batch at a time; scroll once all rows have a place.
    grid_size = tab.grid.gridSize()
    columns = max(1, tab.grid.viewport().width() // grid_size.width())
    full = -(-tab.model.rowCount() // columns) * grid_size.height() - tab.grid.viewport().height()
    layout_started = time.perf_counter()
    while bar.maximum() < full - 2 * grid_size.height() and time.perf_counter() - layout_started < 120:
        app.processEvents()
    layout = time.perf_counter() - layout_started
    viewport = tab.grid.viewport()
    # Jumps first, so that they find cold thumbnails in the small catalogue too.
    rng = np.random.default_rng(seed)
    jump = []
    for value in rng.integers(0, max(bar.maximum(), 1), size=jumps):
        with _Clock() as clock:
            bar.setValue(int(value))
            viewport.repaint()
        jump.append(clock)
    bar.setValue(0)
    wheel = []
    step = 3 * grid_size.height()
    for _ in range(min(frames, bar.maximum() // step)):  # stop at the end: no free frames at the bottom
        with _Clock() as clock:
            bar.setValue(bar.value() + step)
            viewport.repaint()
        wheel.append(clock)
    result = {
        "rows": tab.model.rowCount(),
        "first_paint": first_paint,
        "filters": filters,
        "wheel": wheel,
        "jump": jump,
        "scroll_max": bar.maximum(),
        "layout": layout,
    }
    tab.shutdown()
    tab.deleteLater()
    app.processEvents()
    return result


def _report(name: str, faces: int, build: float, r: dict[str, object]) -> None:
    print(f"\n{name}: {faces} faces (grid shows {r['rows']} rows; scroll range {r['scroll_max']} px)")
    print(f"  build (catalogue API, 200 faces per transaction): {build:.1f} s")
    fp = r["first_paint"]
    print(
        f"  first paint: {fp.wall:.3f} s wall, {fp.cpu:.3f} s CPU "
        f"(whole grid laid out {r['layout']:.2f} s after the filters)"
    )
    print(
        "  filter change (wall / CPU): "
        + ", ".join(f"{k} {v.wall:.3f} / {v.cpu:.3f} s" for k, v in r["filters"].items())
    )
    for key, label in (
        ("wheel", f"wheel scroll, 3 rows per frame, {len(r['wheel'])} frames from the top"),
        ("jump", f"{len(r['jump'])} random scroll-bar jumps"),
    ):
        for kind in ("wall", "cpu"):
            med, p95, worst = _stats([getattr(c, kind) for c in r[key]])
            print(f"  {label} ({kind}): median {med:.1f} ms, p95 {p95:.1f} ms, max {worst:.1f} ms")


def _ratios(base: dict[str, object], big: dict[str, object], label: str) -> None:
    for kind in ("wall", "cpu"):
        parts = [f"first paint ×{getattr(big['first_paint'], kind) / getattr(base['first_paint'], kind):.2f}"]
        parts += [
            f"{k} ×{getattr(big['filters'][k], kind) / max(getattr(base['filters'][k], kind), 1e-9):.2f}"
            for k in big["filters"]
        ]
        for key in ("wheel", "jump"):
            b, g = (_stats([getattr(c, kind) for c in r[key]]) for r in (base, big))
            parts.append(f"{key} median ×{g[0] / max(b[0], 1e-9):.2f} p95 ×{g[1] / max(b[1], 1e-9):.2f}")
        print(f"ratio {label} ({kind}): " + ", ".join(parts))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=200_000)
    parser.add_argument("--baseline", type=int, default=2_000)
    parser.add_argument("--frames", type=int, default=600, help="wheel-scroll frames")
    parser.add_argument("--jumps", type=int, default=100, help="random scroll-bar jumps")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    results = {}
    with tempfile.TemporaryDirectory(prefix="catalogue_scale_") as tmp:
        for name, faces in (("baseline", args.baseline), ("scale", args.faces)):
            folder = Path(tmp) / name
            build = build_catalogue(folder, faces)
            results[name] = measure(app, folder, args.frames, args.jumps)
            _report(name, faces, build, results[name])
    print()
    _ratios(results["baseline"], results["scale"], f"{args.faces} / {args.baseline} faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
