"""Training from uint8 shards at 20k and 200k faces vs faces in memory: img/s and RSS.

The shards are not 200k distinct drawings: ``--distinct`` sketchbook faces (64 px,
with their tags) are drawn once and repeated in order to fill each set, which is
what matters here (bytes on disk, rows read at random positions). Each variant runs
in its own process, which

1. reads ``--read-batches`` random batches of 64 through ``TrainingFaces.batch``
   (the data path alone: batches/s and RSS after touching that many faces), then
2. trains ``--steps`` steps (width 32, 64 px, batch 64, fp32, one thread) with the
   real trainer and reports img/s, img per CPU-second and peak RSS (VmHWM).

Variants: ``memory-small`` (the distinct faces as a FaceSet), ``memory-20k`` (a
FaceSet of 20k faces: what loading a big set into RAM costs), ``shards-20k`` and
``shards-200k``. The shard files (2.5 GB at 200k) go under ``--root`` and are
deleted at the end unless ``--keep``. Page cache is warm (the shards were just
written); a cold disk adds its read time to the data path.

    python benchmarks/shard_training.py [--root /work/data/shard_bench] [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mangagan_app.config import TrainingConfig
from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.ml.dataset import FaceSet, load_face_folder
from mangagan_app.ml.shards import ShardSet, ShardWriter
from mangagan_app.ml.trainer import train

RES = 64
BATCH = 64


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def memory_faces(root: Path, count: int | None) -> FaceSet:
    """The distinct sketchbook faces, or (``count``) them repeated to that many, in RAM."""
    distinct = load_face_folder(root / "sketchbook", RES)
    if count is None:
        return distinct
    reps = -(-count // len(distinct))
    return FaceSet(
        distinct.images.repeat(reps, 1, 1, 1)[:count],
        distinct.cond.repeat(reps, 1)[:count],
        distinct.mask.repeat(reps, 1)[:count],
        source="repeated sketchbook",
    )


def write_shards(root: Path, count: int) -> Path:
    out = root / f"shards_{count}"
    if (out / "manifest.json").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    distinct = load_face_folder(root / "sketchbook", RES)
    hwc = distinct.images.permute(0, 2, 3, 1).numpy()  # (K, H, W, 3)
    cond, mask = distinct.cond.numpy(), distinct.mask.numpy()
    writer = ShardWriter(out, RES, source=f"{len(distinct)} sketchbook faces repeated to {count}")
    t0 = time.perf_counter()
    written = 0
    while written < count:
        n = min(len(hwc), count - written)
        writer.add(hwc[:n], cond[:n], mask[:n])
        written += n
    writer.finish()
    print(
        f"wrote {count} faces to {out} in {time.perf_counter() - t0:.1f} s "
        f"({sum(p.stat().st_size for p in out.iterdir()) / 1e9:.2f} GB)",
        flush=True,
    )
    return out


def child(kind: str, path: str, steps: int, read_batches: int) -> dict:
    torch.set_num_threads(1)
    root = Path(path)
    faces = (
        ShardSet(root)
        if kind.startswith("shards")
        else memory_faces(root.parent, 20_000 if kind == "memory-20k" else None)
    )
    rss_open = status_kb("VmRSS")
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(read_batches):
        faces.batch(torch.randint(len(faces), (BATCH,), generator=g), torch.zeros(BATCH, dtype=torch.bool))
    read_seconds = time.perf_counter() - t0
    rss_after_read = status_kb("VmRSS")

    calls = [0]

    def stop() -> bool:
        calls[0] += 1
        return calls[0] > steps

    run = Path(path).parent / f"run_{kind}"
    shutil.rmtree(run, ignore_errors=True)
    cfg = TrainingConfig(
        data=str(root),
        resolution=RES,
        width=32,
        batch=BATCH,
        epochs=1000,
        tick_steps=10,
        preview_steps=10**6,
        checkpoint_minutes=600.0,
        threads=1,
        precision="fp32",
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    train(cfg, run, faces=faces, should_stop=stop)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    ticks = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()][1:]  # first: warm-up
    shutil.rmtree(run, ignore_errors=True)
    return {
        "kind": kind,
        "faces": len(faces),
        "read_batches_per_s": round(read_batches / read_seconds, 1),
        "rss_open_mb": rss_open // 1024,
        "rss_after_read_mb": rss_after_read // 1024,
        "train_img_per_s": round(float(np.mean([t["img_per_sec"] for t in ticks])), 1),
        "img_per_cpu_s": round(steps * BATCH / cpu, 1),
        "wall_s": round(wall, 1),
        "peak_rss_mb": status_kb("VmHWM") // 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/work/data/shard_bench")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--distinct", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--read-batches", type=int, default=1500)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.steps, args.read_batches)))
        return

    root = Path(args.root)
    if not (root / "sketchbook" / "metadata.jsonl").is_file():
        write_sketchbook(root / "sketchbook", args.distinct, size=RES, seed=0, workers=2)
    variants = [("memory-small", root / "sketchbook"), ("memory-20k", root / "sketchbook")]
    variants += [(f"shards-{n // 1000}k", write_shards(root, n)) for n in args.sizes]
    rows = []
    try:
        for kind, path in variants:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    kind,
                    str(path),
                    "--steps",
                    str(args.steps),
                    "--read-batches",
                    str(args.read_batches),
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-2000:])
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if not args.keep:
            for n in args.sizes:
                shutil.rmtree(root / f"shards_{n}", ignore_errors=True)
    print(
        f"\n{'variant':<13} {'faces':>7} {'read b/s':>9} {'RSS open':>9} {'RSS read':>9} "
        f"{'train img/s':>11} {'img/CPU-s':>9} {'peak RSS':>9}"
    )
    for r in rows:
        print(
            f"{r['kind']:<13} {r['faces']:>7} {r['read_batches_per_s']:>9} {r['rss_open_mb']:>7}MB "
            f"{r['rss_after_read_mb']:>7}MB {r['train_img_per_s']:>11} {r['img_per_cpu_s']:>9} "
            f"{r['peak_rss_mb']:>7}MB"
        )


if __name__ == "__main__":
    main()
