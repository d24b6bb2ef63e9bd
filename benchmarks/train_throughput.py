"""Training img/s and peak memory: this trainer vs a pytorch/examples-style loop.

The baseline is written the way pytorch/examples ``dcgan/main.py`` feeds its model:
an ImageFolder-like dataset that opens, decodes, resizes, centre-crops, flips and
normalises each image with PIL + numpy in ``__getitem__`` (torchvision is not
installed beside this torch; these are the same operations), reads its tag file,
and a ``DataLoader(shuffle=True, num_workers=2)`` (main.py's default). Both loops
run the same networks, batch size and :func:`train_step` on the same images. The
baseline runs float32 as main.py does; ``trainer`` runs this trainer's default
precision (bfloat16 autocast on CPUs with native bf16) and ``trainer-fp32`` isolates
the data path. Each variant runs in its own process so peak RSS is its own.

    python benchmarks/train_throughput.py DATA [--images 4096 --steps 60 --width 32]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from mangagan_app.config import TrainingConfig
from mangagan_app.core.attributes import VOCABULARY
from mangagan_app.ml.dataset import faces_from_items, folder_items
from mangagan_app.ml.networks import Architecture
from mangagan_app.ml.trainer import GanModels, train, train_step

WARMUP = 5
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """CPU time of this process and its live children (DataLoader workers).

    On a CPU shared with other busy jobs wall-clock img/s mostly measures the share a
    loop gets (a loop with worker processes gets more); images per CPU-second is the
    fair cost figure.
    """
    total = time.process_time()
    me = str(os.getpid())
    for stat in os.listdir("/proc"):
        if not stat.isdigit():
            continue
        try:
            fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # ppid
            total += (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
    return total


class PerItemFaces(torch.utils.data.Dataset):
    """ImageFolder + Resize + CenterCrop + RandomHorizontalFlip + ToTensor + Normalize, by hand."""

    def __init__(self, items, size: int):
        self.items, self.size = items, size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        path, text = self.items[i]
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = self.size / min(im.size)  # Resize(size): shorter side to size
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BILINEAR)
            left, top = (im.width - self.size) // 2, (im.height - self.size) // 2
            im = im.crop((left, top, left + self.size, top + self.size))  # CenterCrop
            if torch.rand(1).item() < 0.5:  # RandomHorizontalFlip
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            x = torch.from_numpy(np.asarray(im, np.float32) / 255.0).permute(2, 0, 1)  # ToTensor
            x = (x - 0.5) / 0.5  # Normalize((0.5,)*3, (0.5,)*3)
        attrs, _ = VOCABULARY.parse_tags(text or "", strict=False)
        cond, mask = VOCABULARY.encode(attrs) if text else (np.zeros(VOCABULARY.dim, np.float32),) * 2
        return x, torch.from_numpy(cond), torch.from_numpy(mask)


def run_baseline(args, workers: int) -> dict:
    items = folder_items(args.data)[: args.images]
    cfg = TrainingConfig(width=args.width, batch=args.batch, resolution=args.res)
    models = GanModels(
        cfg, Architecture(args.res, args.width, cfg.z_dim, VOCABULARY.dim, cfg.conditioning), torch.device("cpu")
    )
    loader = torch.utils.data.DataLoader(
        PerItemFaces(items, args.res),
        batch_size=args.batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    pool = torch.from_numpy(
        np.stack([VOCABULARY.encode(VOCABULARY.parse_tags(t or "", strict=False)[0])[0] for _, t in items])
    )

    class FullyKnownLabels:
        """The labels train_step draws fakes from: this set's tags, every slot known."""

        known_columns = torch.ones(VOCABULARY.dim)

        def sample_labels(self, n, g):
            rows = pool[torch.randint(len(pool), (n,), generator=g)]
            return rows, torch.ones_like(rows)

    step, t0 = 0, None
    while step < args.steps + WARMUP:
        for real in loader:
            if step == WARMUP:
                t0, c0 = time.perf_counter(), cpu_seconds()
            train_step(models, cfg, real, FullyKnownLabels(), step, torch.device("cpu"))
            step += 1
            if step == args.steps + WARMUP:
                cpu = cpu_seconds() - c0
                break
    seconds = time.perf_counter() - t0
    images = args.steps * args.batch
    return {"img_per_sec": images / seconds, "img_per_cpu_sec": images / cpu, "load_seconds": 0.0}


def run_trainer(args, precision: str) -> dict:
    t0 = time.perf_counter()
    faces = faces_from_items(folder_items(args.data)[: args.images], args.res)
    load_seconds = time.perf_counter() - t0
    cfg = TrainingConfig(
        data=args.data,
        width=args.width,
        batch=args.batch,
        resolution=args.res,
        epochs=1000,
        tick_steps=1,
        preview_steps=10**9,
        checkpoint_minutes=10**6,
        threads=args.threads,
        precision=precision,
    )
    times: list[float] = []
    cpu: list[float] = []

    def record(p) -> None:
        if p.phase == "training":
            times.append(time.perf_counter())
            cpu.append(cpu_seconds())

    with tempfile.TemporaryDirectory() as run:
        train(cfg, run, faces=faces, progress=record, should_stop=lambda: len(times) >= args.steps + WARMUP)
    # wall time from the end of the warm-up steps to the last step: everything the loop does
    seconds = times[-1] - times[WARMUP - 1]
    images = args.steps * args.batch
    return {
        "img_per_sec": images / seconds,
        "img_per_cpu_sec": images / (cpu[-1] - cpu[WARMUP - 1]),
        "load_seconds": load_seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.variant:
        if args.variant.startswith("trainer"):
            result = run_trainer(args, "fp32" if args.variant == "trainer-fp32" else "auto")
        else:
            result = run_baseline(args, int(args.variant[-1]))
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["peak_rss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(json.dumps(result))
        return

    print(
        f"{args.images} images at {args.res} px, width {args.width}, batch {args.batch}, {args.steps} steps, "
        f"{args.threads} threads; load average {os.getloadavg()[0]:.1f}"
    )
    rows = {}
    for variant in ("trainer", "trainer-fp32", "baseline-workers2", "baseline-workers0"):
        proc = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--variant", variant], capture_output=True, text=True, check=True
        )
        rows[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = rows[variant]
        print(
            f"{variant:<18} {r['img_per_sec']:7.1f} img/s  {r['img_per_cpu_sec']:6.1f} img/CPU-s  "
            f"load {r['load_seconds']:5.1f} s  "
            f"peak RSS {r['peak_rss_mb']:6.0f} MB (+ workers {r['peak_rss_children_mb']:.0f} MB each at most)",
            flush=True,
        )
    for key, label in (("img_per_sec", "wall-clock img/s"), ("img_per_cpu_sec", "images per CPU-second")):
        for variant in ("trainer", "trainer-fp32"):
            mine = rows[variant][key]
            print(
                f"{label}: {variant} / pytorch/examples-style loop = "
                f"{mine / rows['baseline-workers2'][key]:.2f}× (2 workers), "
                f"{mine / rows['baseline-workers0'][key]:.2f}× (0 workers)"
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
