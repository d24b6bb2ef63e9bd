"""How well does the real animeface detector see sketchbook faces?

Three measurements, all in worker processes (the detector holds the GIL):

1. Training crops (the same images ``mangagan synth`` writes) at 128 and 256 px:
   share found, overall and per hair colour, hair style, accessory/tag, skin tone
   and head tilt.
2. A tilt sweep: light-skinned crops at 128 px with the head forced to 0-40 degrees
   of roll, because the sampled tilts rarely go past 20 degrees.
3. Scenes (``mangagan synth-scenes``): share of light-skinned upright faces
   (|tilt| <= 15 degrees) whose true box is >= 100 px that the app's multi-scale
   detection finds with IoU >= 0.5 against the true box; the other faces are
   reported separately.

    python benchmarks/sketchbook_detection.py --crops 500 --scenes 60 --workers 2

Prints tables; with ``--json PATH`` also writes the figures there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from mangagan_app.config import CropConfig
from mangagan_app.core.cropping import detect_faces, detect_faces_multiscale
from mangagan_app.core.cropping.geometry import detection_scales, iou
from mangagan_app.core.sketchbook.face import render_look
from mangagan_app.core.sketchbook.look import sample_look
from mangagan_app.core.sketchbook.parallel import run_chunks
from mangagan_app.core.sketchbook.priors import sample_attributes
from mangagan_app.core.sketchbook.scenes import render_scene, scene_rng

TILT_BINS = ((0, 5), (5, 10), (10, 20), (20, 90))
SWEEP_DEGREES = (0, 10, 20, 30, 40)
SCENE_MIN_BOX = 100
SCENE_MAX_ROLL = 15.0


def crop_task(seed: int, indices: list[int], size: int) -> list[dict]:
    """Detect on sketchbook crops ``indices`` (identical to ``mangagan synth`` output)."""
    out = []
    for i in indices:
        rng = np.random.default_rng([seed, i])
        attrs = sample_attributes(rng)
        look = sample_look(attrs, rng)
        hits = detect_faces(render_look(attrs, look, size))
        out.append({"found": bool(hits), **attrs.to_dict(), "roll": abs(math.degrees(look.roll))})
    return out


def sweep_task(seed: int, indices: list[int], degrees: float) -> list[dict]:
    """Detect on light-skinned 128 px crops with the head rolled by +-``degrees``."""
    out = []
    for i in indices:
        rng = np.random.default_rng([seed, i])
        attrs = sample_attributes(rng)
        attrs.tags.discard("dark_skin")
        look = sample_look(attrs, rng)
        look = dataclasses.replace(look, roll=math.radians(degrees if i % 2 else -degrees))
        out.append({"found": bool(detect_faces(render_look(attrs, look, 128))), "degrees": degrees})
    return out


def scene_task(seed: int, indices: list[int]) -> list[dict]:
    """Render scenes and match the app's multi-scale detections to the true boxes."""
    cfg = CropConfig()
    out = []
    for i in indices:
        scene = render_scene(scene_rng(seed, i))
        w, h = scene.image.size
        scales = detection_scales(
            w, h, min_face=cfg.min_face, detect_face_px=cfg.detect_face_px, pyramid_step=cfg.pyramid_step
        )
        hits = detect_faces_multiscale(scene.image, scales)
        matched = set()
        faces = []
        for face in scene.faces:
            best, best_j = 0.0, -1
            for j, hit in enumerate(hits):
                v = iou(face.box, hit.box)
                if v > best:
                    best, best_j = v, j
            if best >= 0.5:
                matched.add(best_j)
            faces.append(
                {
                    "scene": i,
                    "canvas": [w, h],
                    "box": list(face.box),
                    "iou": best,
                    "roll": face.roll_deg,
                    "dark_skin": face.attributes.has("dark_skin"),
                }
            )
        out.append({"faces": faces, "extra_hits": len(hits) - len(matched)})
    return out


def rate(rows: list[dict], key: str = "found") -> str:
    n = len(rows)
    k = sum(bool(r[key]) for r in rows)
    return f"{k:4d}/{n:<4d} {100.0 * k / n:5.1f} %" if n else "   -/0          "


def crop_report(rows: list[dict], size: int) -> dict:
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups["hair colour"][r["choices"]["hair_colour"]].append(r)
        groups["hair style"][r["choices"]["hair_style"]].append(r)
        groups["eye colour"][r["choices"]["eye_colour"]].append(r)
        for tag in r["tags"]:
            if tag != "dark_skin":
                groups["tag"][tag].append(r)
        if not set(r["tags"]) & {"hat", "ribbon", "glasses", "cat_ears"}:
            groups["tag"]["(no accessory)"].append(r)
        groups["skin"]["dark_skin" if "dark_skin" in r["tags"] else "light"].append(r)
        for lo, hi in TILT_BINS:
            if lo <= r["roll"] < hi:
                groups["head tilt"][f"{lo}-{hi} deg"].append(r)
    light = [r for r in rows if "dark_skin" not in r["tags"]]
    print(f"\n== training crops at {size} px: found {rate(rows)}   light skin {rate(light)}")
    summary = {"all": rate(rows), "light": rate(light)}
    for name in ("hair colour", "hair style", "eye colour", "tag", "skin", "head tilt"):
        values = (
            groups[name]
            if name != "head tilt"
            else {f"{lo}-{hi} deg": groups[name][f"{lo}-{hi} deg"] for lo, hi in TILT_BINS}
        )
        print(f"  {name}:")
        ordered = values.items() if name == "head tilt" else sorted(values.items())
        for value, sel in ordered:
            print(f"    {value:<16} {rate(sel)}")
            summary[f"{name}/{value}"] = rate(sel)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=500, help="crops per size (default 500)")
    parser.add_argument("--sweep", type=int, default=100, help="crops per tilt angle (default 100)")
    parser.add_argument("--scenes", type=int, default=60, help="scenes (default 60)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    figures: dict = {"seed": args.seed}

    def progress(label: str):
        def show(done: int, total: int) -> None:
            print(f"\r{label} {done}/{total}", end="", file=sys.stderr, flush=True)

        return show

    for size in (128, 256):
        t = time.perf_counter()
        chunks = [(args.seed, list(range(i, min(i + 25, args.crops))), size) for i in range(0, args.crops, 25)]
        rows, _ = run_chunks(
            crop_task, chunks, workers=args.workers, total=args.crops, progress=progress(f"crops {size}px")
        )
        print(f"\r({time.perf_counter() - t:.0f} s)", file=sys.stderr)
        figures[f"crops_{size}"] = crop_report(rows, size)

    chunks = [
        (args.seed + 1, list(range(i, min(i + 25, args.sweep))), float(d))
        for d in SWEEP_DEGREES
        for i in range(0, args.sweep, 25)
    ]
    rows, _ = run_chunks(
        sweep_task, chunks, workers=args.workers, total=len(SWEEP_DEGREES) * args.sweep, progress=progress("tilt sweep")
    )
    print("\n== tilt sweep (light skin, 128 px, head rolled by +-N degrees)", file=sys.stdout)
    figures["tilt_sweep"] = {}
    for d in SWEEP_DEGREES:
        sel = [r for r in rows if r["degrees"] == d]
        print(f"    {d:>2} deg           {rate(sel)}")
        figures["tilt_sweep"][str(d)] = rate(sel)

    t = time.perf_counter()
    chunks = [(args.seed, [i]) for i in range(args.scenes)]
    scenes, _ = run_chunks(scene_task, chunks, workers=args.workers, total=args.scenes, progress=progress("scenes"))
    print(f"\r({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    rows = [face for scene in scenes for face in scene["faces"]]
    for r in rows:
        r["hit"] = r["iou"] >= 0.5
    big = [r for r in rows if r["box"][2] >= SCENE_MIN_BOX]
    target = [r for r in big if not r["dark_skin"] and abs(r["roll"]) <= SCENE_MAX_ROLL]
    print(f"\n== scenes: {args.scenes} canvases, {len(rows)} faces, IoU >= 0.5 with the true box")
    lines = {
        "light upright, box >= 100 px (goal 95 %)": target,
        "all faces, box >= 100 px": big,
        "dark skin, box >= 100 px": [r for r in big if r["dark_skin"]],
        f"tilted > {SCENE_MAX_ROLL:.0f} deg, box >= 100 px": [r for r in big if abs(r["roll"]) > SCENE_MAX_ROLL],
        "light upright, box 48-99 px": [
            r for r in rows if r["box"][2] < SCENE_MIN_BOX and not r["dark_skin"] and abs(r["roll"]) <= SCENE_MAX_ROLL
        ],
    }
    figures["scenes"] = {}
    for label, sel in lines.items():
        print(f"    {label:<44} {rate(sel, 'hit')}")
        figures["scenes"][label] = rate(sel, "hit")
    found = [r["iou"] for r in target if r["hit"]]
    if found:
        print(f"    median IoU of the found target faces: {float(np.median(found)):.2f}")
        figures["scenes"]["median_iou"] = round(float(np.median(found)), 3)
    extra = sum(scene["extra_hits"] for scene in scenes)
    print(f"    detections matching no true face: {extra}")
    figures["scenes"]["unmatched_detections"] = extra
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
