"""Cropping figures on sketchbook scenes: detection recall per scale plan, images/s, colours, responsiveness.

    .venv/bin/python benchmarks/crop_throughput.py [--scenes 8] [--seed 0]

Scenes come from ``mangagan_app.core.sketchbook.scenes.render_scene`` (canvases
300-3000 px, 1-4 characters, true face boxes drawn the way animeface boxes a face).
A true face counts as found when a detection overlaps it (IoU >= 0.3) or has its
centre inside it. Prints:

1. recall, false positives and seconds per image of each detection-scale plan on
   canvases >= 2000 px: full resolution in one pass, the app's pyramid, the app's
   pyramid with ``--min-face 96`` and one pass with the long side at 1024;
2. images/s and crops/s of a whole crop run with 1 worker and with all cores;
3. how often the detector's hair / eye colour, mapped to the vocabulary, equals
   the face's true tag;
4. the window's event-loop responsiveness while a crop run goes on (largest gap
   between 10 ms timer ticks).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mangagan_app.config import CropConfig  # noqa: E402
from mangagan_app.core.cropping import detect_faces_multiscale  # noqa: E402
from mangagan_app.core.cropping.geometry import detection_scales, iou  # noqa: E402
from mangagan_app.core.cropping.pipeline import crop_sources, default_workers  # noqa: E402
from mangagan_app.core.cropping.tags import (  # noqa: E402
    EYE_REFERENCE_RGB,
    HAIR_REFERENCE_RGB,
    nearest_colour,
)
from mangagan_app.core.sketchbook.scenes import render_scene, scene_rng  # noqa: E402


def load_scenes(count: int, seed: int, *, min_side: int = 0):
    """``count`` sketchbook scenes (image, [(true box, attributes)]) whose longer side is >= ``min_side``."""
    out, index = [], 0
    while len(out) < count:
        scene = render_scene(scene_rng(seed, index))
        index += 1
        if max(scene.image.size) >= min_side:
            out.append((scene.image, [(f.box, f.attributes) for f in scene.faces]))
    return out


def match(detections, placed):
    """(true face index -> detection) for found faces, and the number of detections matching none."""
    found, stray = {}, 0
    for face in detections:
        cx, cy = face.box[0] + face.box[2] / 2, face.box[1] + face.box[3] / 2
        hit = next(
            (
                i
                for i, ((x, y, w, h), _) in enumerate(placed)
                if iou(face.box, (x, y, w, h)) >= 0.3 or (x <= cx < x + w and y <= cy < y + h)
            ),
            None,
        )
        if hit is None:
            stray += 1
        elif hit not in found:
            found[hit] = face
    return found, stray


def app_scales(w: int, h: int, cfg: CropConfig) -> list[float]:
    return detection_scales(
        w, h, min_face=cfg.min_face, detect_face_px=cfg.detect_face_px, pyramid_step=cfg.pyramid_step
    )


def bench_scales(scenes, cfg: CropConfig) -> None:
    big_face_cfg = CropConfig(min_face=96)
    plans = {
        "full resolution, one pass": lambda w, h: [1.0],
        "app pyramid (min face 48)": lambda w, h: app_scales(w, h, cfg),
        "app pyramid, --min-face 96": lambda w, h: app_scales(w, h, big_face_cfg),
        "full + quarter (step 4)": lambda w, h: detection_scales(
            w, h, min_face=cfg.min_face, detect_face_px=cfg.detect_face_px, pyramid_step=4.0
        ),
        "long side 1024, one pass": lambda w, h: [min(1.0, 1024 / max(w, h))],
    }
    total = sum(len(p) for _, p in scenes)
    big = sum(1 for _, p in scenes for (b, _) in p if b[2] >= 96)
    print(
        f"\n1. detection plans on {len(scenes)} scenes with longer side >= 2000 px "
        f"({total} faces, {big} of them >= 96 px wide)"
    )
    print(f"{'plan':<30}{'recall':>8}{'>=96px':>8}{'false+':>8}{'s/image':>9}{'speed':>7}")
    baseline = None
    for name, plan in plans.items():
        hits = hits_big = strays = 0
        started = time.perf_counter()
        for image, placed in scenes:
            found, stray = match(detect_faces_multiscale(image, plan(*image.size)), placed)
            hits += len(found)
            hits_big += sum(1 for i in found if placed[i][0][2] >= 96)
            strays += stray
        seconds = (time.perf_counter() - started) / len(scenes)
        baseline = baseline or seconds
        print(
            f"{name:<30}{hits / total:>8.1%}{hits_big / max(big, 1):>8.1%}{strays:>8}{seconds:>9.2f}"
            f"{baseline / seconds:>6.1f}x"
        )


def bench_throughput(scenes, cfg: CropConfig) -> None:
    sides = sorted(max(image.size) for image, _ in scenes)
    print(
        f"\n2. whole crop run (read, detect, crop, write, catalogue) on {len(scenes)} scenes "
        f"(longer side {sides[0]}-{sides[-1]} px, median {sides[len(sides) // 2]})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "src")
        src.mkdir()
        for i, (image, _) in enumerate(scenes):
            image.save(src / f"scene{i:03d}.png")
        rates = {}
        for workers in sorted({1, default_workers()}):
            run_cfg = CropConfig(**{**cfg.to_dict(), "workers": workers})
            summary = crop_sources([src], Path(tmp, f"ds{workers}"), run_cfg)
            rates[workers] = summary.processed / summary.seconds
            print(
                f"  {workers} worker(s): {rates[workers]:.2f} images/s, {summary.faces / summary.seconds:.1f} "
                f"crops/s ({summary.faces} crops, {summary.seconds:.1f} s incl. process start)"
            )
        if len(rates) > 1:
            print(f"  speed-up: x{rates[max(rates)] / rates[1]:.2f}")


def bench_colours(scenes, cfg: CropConfig) -> None:
    hair = eye = n = 0
    confusion: Counter = Counter()
    for image, placed in scenes:
        found, _ = match(detect_faces_multiscale(image, app_scales(*image.size, cfg)), placed)
        for i, face in found.items():
            attrs = placed[i][1]
            guess_hair = nearest_colour(face.hair_rgb, "hair_colour")
            hair += guess_hair == attrs.get("hair_colour")
            eye += nearest_colour(face.eye_rgb, "eye_colour") == attrs.get("eye_colour")
            confusion[(attrs.get("hair_colour"), guess_hair)] += 1
            n += 1
    print(
        f"\n3. detector colour -> vocabulary on {n} found faces: hair {hair / n:.1%}, eyes {eye / n:.1%} right "
        f"(chance: 1/{len(HAIR_REFERENCE_RGB)} and 1/{len(EYE_REFERENCE_RGB)})"
    )
    wrong = [(k, v) for k, v in confusion.most_common() if k[0] != k[1]][:8]
    print("  commonest hair mistakes (true -> mapped): " + ", ".join(f"{a}->{b} x{v}" for (a, b), v in wrong))


def bench_responsiveness(scenes, cfg: CropConfig) -> None:
    """Largest gap between 10 ms timer ticks of a Qt event loop while a crop run works on its thread."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication, QTimer

    from mangagan_app.core.cropping.pipeline import crop_sources
    from mangagan_app.gui.function_worker import create_worker

    app = QCoreApplication.instance() or QCoreApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "src")
        src.mkdir()
        for i, (image, _) in enumerate(scenes):
            image.save(src / f"scene{i:03d}.png")
        ticks: list[float] = []
        timer = QTimer()
        timer.setInterval(10)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start()
        worker = create_worker(crop_sources, [str(src)], Path(tmp, "ds"), cfg, connect={"finished": app.quit})
        app.exec()
        timer.stop()
        worker.wait()
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    print(
        f"\n4. event loop while cropping {len(scenes)} scenes: {len(ticks)} ticks, largest gap "
        f"{max(gaps) * 1000:.0f} ms, median {sorted(gaps)[len(gaps) // 2] * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--big", type=int, default=6, help="scenes >= 2000 px for the scale plans")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sections", default="1234", help="which sections to run, e.g. 13")
    args = parser.parse_args()
    cfg = CropConfig()
    big = load_scenes(args.big, args.seed, min_side=2000) if "1" in args.sections or "3" in args.sections else []
    mixed = load_scenes(args.scenes * 2, args.seed + 1)
    if "1" in args.sections:
        bench_scales(big, cfg)
    if "2" in args.sections:
        bench_throughput(mixed, cfg)
    if "3" in args.sections:
        bench_colours(big + mixed, cfg)
    if "4" in args.sections:
        bench_responsiveness(mixed[: args.scenes], cfg)


if __name__ == "__main__":
    main()
