"""How often are the detector's colour tags right on real anime faces?

When a source image has no tag file, the Dataset tab tags each crop with the hair
and eye colour that animeface reads on the face (``tags.face_tags`` without a
sidecar, i.e. ``nearest_colour`` on the detector's hair and eye RGB). This script
runs exactly that path — the crop pipeline's own detection scales for the image
(``CropConfig`` defaults), hits smaller than ``min_face`` ignored, the most likely
hit kept — on every face of the real-faces development set whose sidecar names a
hair and/or eye colour, and compares the result with the sidecar (parsed with the
app's vocabulary; ``gray_eyes`` is not in it and is counted apart).

The faces are 96x96 crops, so the pipeline detects at 1.0x. ``--scale S`` runs
one pass at ``S`` instead; larger is not better: the detector misses faces much
bigger than ~130 px: at 3x (288 px) it found 1.8 % of these faces, at 1x 82.9 %.

    python benchmarks/detector_colours.py DEV_FACES.tar --workers 1 \\
        --json /tmp/detector_colours.json --sheet /tmp/detector_colours_wrong.png

DATA is the set's tar (read in place, never extracted) or a folder of ``<id>.jpg``
+ ``<id>.txt`` (or a folder holding only such a folder). Prints the faces with
tags, the faces detected, hair and eye colour accuracy overall and per colour
(with the most common wrong reading) and the confusions; ``--json`` writes the
figures, ``--sheet`` a contact sheet of misread faces (detector box drawn, true ->
read colour with a swatch of the reading).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tarfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw
from real_faces_data import FACE_SUFFIXES, numbered_faces  # sibling in benchmarks/

from mangagan_app.config import CropConfig
from mangagan_app.core.attributes import VOCABULARY, ConflictingTagsError
from mangagan_app.core.cropping import detect_faces_multiscale, to_detector_rgb
from mangagan_app.core.cropping.geometry import detection_scales
from mangagan_app.core.cropping.tags import face_tags
from mangagan_app.core.files import atomic_write_bytes, atomic_write_json
from mangagan_app.core.sketchbook.parallel import run_chunks

GROUPS = ("hair_colour", "eye_colour")
CHUNK = 50


@dataclass(frozen=True)
class TaggedFace:
    """One face of the set and the colours its sidecar names (``None``: not named)."""

    face_id: int
    image: bytes
    hair_colour: str | None
    eye_colour: str | None


def sidecar_colours(text: str) -> tuple[dict[str, str], list[str]]:
    """The hair/eye colours a kohya sidecar names, and its colour tags outside the vocabulary.

    Raises ``ConflictingTagsError`` when the sidecar names two hair (or eye) colours.
    """
    attrs, unknown = VOCABULARY.parse_tags(text, strict=False)
    colours = {g: attrs.choices[g] for g in GROUPS if g in attrs.choices}
    off_vocabulary = [t.replace(" ", "_") for t in unknown if t.replace(" ", "_").endswith(("_hair", "_eyes"))]
    return colours, off_vocabulary


def _face_files(data: Path) -> list[tuple[int, bytes, str | None]]:
    """(id, image bytes, sidecar text or None) of every numbered face in a folder or tar."""
    if data.is_dir():
        folder = data
        subfolders = [p for p in data.iterdir() if p.is_dir()]
        if not numbered_faces(data) and len(subfolders) == 1:
            folder = subfolders[0]
        out = []
        for face in numbered_faces(folder):
            sidecar = face.with_suffix(".txt")
            text = sidecar.read_text(encoding="utf-8", errors="replace") if sidecar.is_file() else None
            out.append((int(face.stem), face.read_bytes(), text))
        return out
    if not tarfile.is_tarfile(data):
        raise ValueError(f"{data}: neither a folder nor a tar archive")
    images: dict[int, bytes] = {}
    texts: dict[int, str] = {}
    with tarfile.open(data) as tar:
        for member in tar:
            path = Path(member.name)
            if not member.isfile() or not path.stem.isdigit():
                continue
            if path.suffix in FACE_SUFFIXES:
                images[int(path.stem)] = tar.extractfile(member).read()
            elif path.suffix == ".txt":
                texts[int(path.stem)] = tar.extractfile(member).read().decode("utf-8", errors="replace")
    return [(i, images[i], texts.get(i)) for i in sorted(images)]


def tagged_faces(data: Path) -> tuple[list[TaggedFace], dict[str, int]]:
    """The faces of ``data`` whose sidecar names a hair or eye colour, in id order, and counts of the rest.

    Raises ``ValueError`` when ``data`` is neither a folder nor a tar, or holds no numbered faces.
    """
    files = _face_files(data)
    if not files:
        raise ValueError(f"{data}: no numbered {'/'.join(FACE_SUFFIXES)} faces")
    faces = []
    counts: Counter[str] = Counter(faces=len(files))
    for face_id, image, text in files:
        if text is None:
            counts["no sidecar"] += 1
            continue
        try:
            colours, off_vocabulary = sidecar_colours(text)
        except ConflictingTagsError:
            counts["conflicting colour tags"] += 1
            continue
        counts.update(f"tag outside the vocabulary: {t}" for t in off_vocabulary)
        if colours:
            faces.append(TaggedFace(face_id, image, colours.get("hair_colour"), colours.get("eye_colour")))
        else:
            counts["sidecar without a colour"] += 1
    return faces, dict(counts)


def read_task(items: list[tuple[int, bytes]], scale: float | None) -> list[dict]:
    """The app's colour tags for each face (``hair_colour``/``eye_colour`` ``None`` when none is found).

    ``scale`` ``None`` uses the crop pipeline's own scales for the image size.
    """
    cfg = CropConfig()
    out = []
    for face_id, data in items:
        rgb = to_detector_rgb(Image.open(io.BytesIO(data)))
        scales = (
            [scale]
            if scale is not None
            else detection_scales(
                *rgb.size, min_face=cfg.min_face, detect_face_px=cfg.detect_face_px, pyramid_step=cfg.pyramid_step
            )
        )
        hits = [h for h in detect_faces_multiscale(rgb, scales) if max(h.box[2], h.box[3]) >= cfg.min_face]
        record: dict = {"id": face_id, "hits": len(hits), "hair_colour": None, "eye_colour": None}
        if hits:
            best = max(hits, key=lambda h: h.likelihood)
            tags, _ = face_tags(None, best.hair_rgb, best.eye_rgb)
            read, _ = VOCABULARY.parse_tags(tags)
            record.update(
                box=list(best.box),
                likelihood=round(best.likelihood, 3),
                hair_rgb=list(best.hair_rgb),
                eye_rgb=list(best.eye_rgb),
                **{g: read.choices[g] for g in GROUPS},
            )
        out.append(record)
    return out


def score_group(pairs: list[tuple[str, str | None]]) -> dict:
    """Accuracy of (true, read) colour pairs; ``read`` ``None`` means no face was detected.

    Returns the faces tagged, detected and read correctly overall and per true
    colour (with the most common wrong reading), the accuracy of always answering
    the most common true colour (the floor a reading must beat), and the confusion
    counts ``{true: {read: n}}`` over the detected faces.
    """

    def summary(sel: list[tuple[str, str | None]]) -> dict:
        detected = [(t, r) for t, r in sel if r is not None]
        correct = sum(t == r for t, r in detected)
        wrong = Counter(r for t, r in detected if t != r).most_common(1)
        return {
            "tagged": len(sel),
            "detected": len(detected),
            "correct": correct,
            "accuracy": round(correct / len(detected), 4) if detected else None,
            "most_common_wrong": list(wrong[0]) if wrong else None,
        }

    confusion: dict[str, Counter[str]] = {}
    for true, read in pairs:
        if read is not None:
            confusion.setdefault(true, Counter())[read] += 1
    detected_true = Counter(t for t, r in pairs if r is not None)
    overall = summary(pairs)
    if detected_true:
        colour, n = detected_true.most_common(1)[0]
        overall["always_most_common"] = [colour, round(n / overall["detected"], 4)]
    return {
        "overall": overall,
        "per_colour": {c: summary([p for p in pairs if p[0] == c]) for c in sorted({t for t, _ in pairs})},
        "confusion": {t: dict(confusion[t].most_common()) for t in sorted(confusion)},
    }


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:5.1f} %" if whole else "    - "


def print_group(label: str, scores: dict) -> None:
    o = scores["overall"]
    print(f"\n== {label}: {o['correct']}/{o['detected']} detected faces right ({_pct(o['correct'], o['detected'])})")
    if "always_most_common" in o:
        colour, share = o["always_most_common"]
        print(f"   (always answering {colour}, the most common, would be right {100 * share:.1f} %)")
    print(f"   {'true colour':<12} {'tagged':>6} {'detected':>8} {'right':>8}   most common wrong reading")
    for colour, s in scores["per_colour"].items():
        wrong = s["most_common_wrong"]
        wrong_text = f"{wrong[0]} ({_pct(wrong[1], s['detected']).strip()})" if wrong else "-"
        print(f"   {colour:<12} {s['tagged']:>6} {s['detected']:>8} {_pct(s['correct'], s['detected'])}   {wrong_text}")
    reads = sorted({r for row in scores["confusion"].values() for r in row})
    print(
        f"   confusion (rows: true, columns: read, detected faces)\n   {'':<8}" + "".join(f"{r[:6]:>7}" for r in reads)
    )
    for true, row in scores["confusion"].items():
        print(f"   {true[:8]:<8}" + "".join(f"{row.get(r, 0):>7}" for r in reads))
    pairs = Counter({(t, r): n for t, row in scores["confusion"].items() for r, n in row.items() if t != r})
    top = ", ".join(f"{t}->{r} {n}" for (t, r), n in pairs.most_common(5))
    print(f"   most frequent confusions: {top}")


def write_sheet(path: Path, faces: list[TaggedFace], records: dict[int, dict], count: int) -> int:
    """A contact sheet of up to ``count`` misread faces, evenly spread over them by id; returns how many."""
    wrong = [
        f
        for f in faces
        if records[f.face_id]["hits"] and any(getattr(f, g) not in (None, records[f.face_id][g]) for g in GROUPS)
    ]
    step = max(1, len(wrong) / max(1, count))
    chosen = [wrong[int(i * step)] for i in range(min(count, len(wrong)))]
    zoom, tile_w, tile_h, cols = 2, 200, 236, 8
    rows = max(1, -(-len(chosen) // cols))
    sheet = Image.new("RGB", (cols * tile_w, rows * tile_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for n, face in enumerate(chosen):
        rec = records[face.face_id]
        x0, y0 = (n % cols) * tile_w + 4, (n // cols) * tile_h + 4
        image = to_detector_rgb(Image.open(io.BytesIO(face.image)))
        sheet.paste(image.resize((image.width * zoom, image.height * zoom), Image.Resampling.NEAREST), (x0, y0))
        bx, by, bw, bh = (v * zoom for v in rec["box"])
        draw.rectangle((x0 + bx, y0 + by, x0 + bx + bw - 1, y0 + by + bh - 1), outline=(0, 255, 0))
        for line, (group, word) in enumerate((("hair_colour", "hair"), ("eye_colour", "eye"))):
            y = y0 + image.height * zoom + 2 + line * 14
            swatch = tuple(rec["hair_rgb" if word == "hair" else "eye_rgb"])
            draw.rectangle((x0, y, x0 + 11, y + 11), fill=swatch, outline=(0, 0, 0))
            true = getattr(face, group) or "?"
            mark = "" if true == rec[group] else " X"
            draw.text((x0 + 15, y), f"{word} {true}->{rec[group]}{mark}", fill=(0, 0, 0))
        draw.text((x0 + 120, y0 + image.height * zoom + 30), f"#{face.face_id}", fill=(120, 120, 120))
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return len(chosen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the real-faces set: its tar or a folder of <id>.jpg + <id>.txt")
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="one detection pass at this scale (default: the crop pipeline's scales)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--limit", type=int, default=None, help="measure only the first N tagged faces (by id)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--sheet", type=Path, default=None, help="write a contact sheet of misread faces here")
    parser.add_argument("--sheet-count", type=int, default=48, help="faces on the sheet (default 48)")
    args = parser.parse_args(argv)

    faces, counts = tagged_faces(args.data)
    faces = faces[: args.limit] if args.limit is not None else faces
    chunks = [([(f.face_id, f.image) for f in faces[i : i + CHUNK]], args.scale) for i in range(0, len(faces), CHUNK)]
    t = time.perf_counter()

    def progress(done: int, total: int) -> None:
        print(f"\rfaces {done}/{total} ({time.perf_counter() - t:.0f} s)", end="", file=sys.stderr, flush=True)

    rows, _ = run_chunks(read_task, chunks, workers=args.workers, total=len(faces), progress=progress)
    seconds = time.perf_counter() - t
    print(file=sys.stderr)
    records = {r["id"]: r for r in rows}
    detected = sum(r["hits"] > 0 for r in rows)
    sizes = Counter(Image.open(io.BytesIO(f.image)).size for f in faces)
    scale_text = (
        f"one pass at {args.scale:g}x" if args.scale is not None else "the crop pipeline's scales (CropConfig defaults)"
    )

    print(f"{args.data}: {counts['faces']} faces, {len(faces)} with a hair and/or eye colour tag measured")
    for key, n in sorted(counts.items()):
        if key != "faces":
            print(f"   {key}: {n}")
    print(f"crop sizes: {', '.join(f'{w}x{h} ({n})' for (w, h), n in sizes.most_common())}; detection: {scale_text}")
    print(f"faces detected: {detected}/{len(faces)} ({_pct(detected, len(faces)).strip()}) in {seconds:.0f} s")
    figures: dict = {
        "data": str(args.data),
        "detection": scale_text,
        "faces_measured": len(faces),
        "faces_detected": detected,
        "sidecars": counts,
        "seconds": round(seconds, 1),
        "workers": args.workers,
        "machine": f"{platform.system()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    for group, label in (("hair_colour", "hair colour"), ("eye_colour", "eye colour")):
        pairs = [(getattr(f, group), records[f.face_id][group]) for f in faces if getattr(f, group) is not None]
        figures[group] = score_group(pairs)
        print_group(label, figures[group])
    if args.sheet:
        shown = write_sheet(args.sheet, faces, records, args.sheet_count)
        print(f"\ncontact sheet of {shown} misread faces: {args.sheet}")
    if args.json:
        atomic_write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
