"""Cropping figures on sketchbook scenes: detection recall per scale choice, images/s, colour mapping.

    .venv/bin/python benchmarks/crop_throughput.py [--scenes 12] [--quick]

Scenes are big canvases with sketchbook faces (``render_face``) pasted at known
places and sizes; a face counts as found when one detection's centre lies in its
tile. Prints:

1. recall, false positives and seconds per image of each detection-scale plan
   on canvases >= 2000 px (full resolution vs the pyramid the app uses vs
   downscaled first passes);
2. images/s of a whole crop run with 1 worker and with all cores;
3. how often the detector's hair / eye colour, mapped to the vocabulary, equals
   the face's true tag.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mangagan_app.config import CropConfig  # noqa: E402
from mangagan_app.core.cropping import detect_faces_multiscale  # noqa: E402
from mangagan_app.core.cropping.geometry import detection_scales  # noqa: E402
from mangagan_app.core.cropping.pipeline import crop_sources, default_workers  # noqa: E402
from mangagan_app.core.cropping.tags import nearest_colour  # noqa: E402
from mangagan_app.core.sketchbook import render_face, sample_attributes  # noqa: E402


def make_scene(rng: np.random.Generator, width: int, height: int, tile_sizes: list[int]):
    """A canvas with one sketchbook face per tile size; returns (image, [(tile box, attrs)])."""
    base = rng.integers(150, 240, 3)
    ramp = np.linspace(0, 1, height)[:, None, None]
    canvas = (base * (1 - 0.3 * ramp) + rng.normal(0, 6, (height, width, 3))).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(canvas)
    placed = []
    x = y = 8
    row = 0
    for size in tile_sizes:
        if x + size > width:
            x, y, row = 8, y + row + 8, 0
        if y + size > height:
            break
        attrs = sample_attributes(rng)
        image.paste(render_face(attrs, rng, size), (x, y))
        placed.append(((x, y, size, size), attrs))
        x += size + int(rng.integers(8, 40))
        row = max(row, size)
    return image, placed


def match(detections, placed):
    """(tile index -> detection) for found faces, and the number of detections in no tile."""
    found, stray = {}, 0
    for face in detections:
        cx, cy = face.box[0] + face.box[2] / 2, face.box[1] + face.box[3] / 2
        hit = next((i for i, ((x, y, w, h), _) in enumerate(placed) if x <= cx < x + w and y <= cy < y + h), None)
        if hit is None:
            stray += 1
        elif hit not in found:
            found[hit] = face
    return found, stray


def scene_set(count: int, width: int, height: int, seed: int):
    rng = np.random.default_rng(seed)
    sizes = [96, 128, 160, 200, 256, 320, 400, 512]
    return [make_scene(rng, width, height, list(rng.permutation(sizes))) for _ in range(count)]


def bench_scales(scenes, cfg: CropConfig) -> None:
    plans = {
        "full resolution, one pass": lambda w, h: [1.0],
        "app pyramid (default)": lambda w, h: detection_scales(w, h, min_face=cfg.min_face,
                                                              detect_face_px=cfg.detect_face_px,
                                                              pyramid_step=cfg.pyramid_step),
        "pyramid from 0.5": lambda w, h: detection_scales(w, h, min_face=96, detect_face_px=48, pyramid_step=2.0),
        "long side 1024, one pass": lambda w, h: [1024 / max(w, h)],
        "long side 1024 + half": lambda w, h: [1024 / max(w, h), 512 / max(w, h)],
    }
    print(f"\n1. detection scale plans on {len(scenes)} canvases of {scenes[0][0].size} "
          f"({sum(len(p) for _, p in scenes)} faces, tiles 96-512 px)")
    print(f"{'plan':<28}{'recall':>8}{'false+':>8}{'s/image':>9}  recall by tile size")
    baseline = None
    for name, plan in plans.items():
        by_size: Counter = Counter()
        tot_size: Counter = Counter()
        hits = strays = 0
        started = time.perf_counter()
        for image, placed in scenes:
            found, stray = match(detect_faces_multiscale(image, plan(*image.size)), placed)
            hits += len(found)
            strays += stray
            for i, ((_, _, s, _), _) in enumerate(placed):
                tot_size[s] += 1
                by_size[s] += i in found
        seconds = (time.perf_counter() - started) / len(scenes)
        baseline = baseline or seconds
        total = sum(len(p) for _, p in scenes)
        sizes = " ".join(f"{s}:{by_size[s]}/{tot_size[s]}" for s in sorted(tot_size))
        print(f"{name:<28}{hits / total:>8.1%}{strays:>8}{seconds:>9.2f}  x{baseline / seconds:.1f} faster | {sizes}")


def bench_throughput(scenes, cfg: CropConfig) -> None:
    print(f"\n2. whole crop run (read, detect, crop, write, catalogue) on {len(scenes)} canvases "
          f"of {scenes[0][0].size}")
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
            print(f"  {workers} worker(s): {rates[workers]:.2f} images/s, {summary.faces / summary.seconds:.1f} "
                  f"crops/s ({summary.faces} crops, {summary.seconds:.1f} s incl. process start)")
        if len(rates) > 1:
            print(f"  speed-up: x{rates[max(rates)] / rates[1]:.2f}")


def bench_colours(scenes, cfg: CropConfig) -> None:
    hair = eye = n = 0
    confusion: Counter = Counter()
    for image, placed in scenes:
        w, h = image.size
        found, _ = match(detect_faces_multiscale(image, detection_scales(
            w, h, min_face=cfg.min_face, detect_face_px=cfg.detect_face_px, pyramid_step=cfg.pyramid_step)), placed)
        for i, face in found.items():
            attrs = placed[i][1]
            guess_hair = nearest_colour(face.hair_rgb, "hair_colour")
            hair += guess_hair == attrs.get("hair_colour")
            eye += nearest_colour(face.eye_rgb, "eye_colour") == attrs.get("eye_colour")
            confusion[(attrs.get("hair_colour"), guess_hair)] += 1
            n += 1
    print(f"\n3. detector colour -> vocabulary on {n} found faces: hair {hair / n:.1%}, eyes {eye / n:.1%} right")
    wrong = [(k, v) for k, v in confusion.most_common() if k[0] != k[1]][:8]
    print("  commonest hair mistakes (true -> mapped): " + ", ".join(f"{a}->{b} x{v}" for (a, b), v in wrong))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = CropConfig()
    big = scene_set(args.scenes, 2048, 1536, args.seed)
    bench_scales(big, cfg)
    bench_throughput(scene_set(args.scenes * 2, 1024, 768, args.seed + 1), cfg)
    bench_colours(big + scene_set(args.scenes * 2, 1024, 768, args.seed + 2), cfg)


if __name__ == "__main__":
    main()
