"""What G's resize doubling costs per training step, computed two ways, next to the transposed G.

    python benchmarks/g_doubling.py [--res 64] [--width 32] [--batch 64] [--steps 20] [--threads 1]

Three generators, each in a full ``train_step`` (D and G updates, augmentation, bf16 when the
trainer would use it) on random images with conditions drawn as training draws them:

* ``transpose``: the old G (4×4 stride-2 transposed convolutions);
* ``resize, plain``: the resize G as it was first written, ``conv3x3(upsample_nearest(x))``;
* ``resize``: the same weights computed as ``networks.NearestDoublingConv`` does (one
  transposed convolution with summed taps, no doubled image).

Prints images per CPU-second of this process (one thread by default, so the figure is the
cost, whatever else runs) and the ratio of each to ``resize, plain``, measured in this run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from mangagan_app.config import TrainingConfig
from mangagan_app.core.attributes import VOCABULARY
from mangagan_app.core.face_recipe import random_attributes
from mangagan_app.ml.networks import Architecture, NearestDoublingConv
from mangagan_app.ml.sampling import complete_condition
from mangagan_app.ml.trainer import GanModels, train_step

WARMUP = 3


class PlainDoublingConv(NearestDoublingConv):
    """The first implementation: the 3×3 convolution run on the doubled image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(nn.functional.interpolate(x, scale_factor=2, mode="nearest"), self.weight, self.bias)


class RandomLabels:
    """Conditions drawn like training draws them, every slot known."""

    vocabulary = VOCABULARY
    known_columns = torch.ones(VOCABULARY.dim)

    def __init__(self):
        rng = np.random.default_rng(0)
        pool = [complete_condition(random_attributes(VOCABULARY, rng), rng, VOCABULARY) for _ in range(256)]
        self.pool = torch.from_numpy(np.stack(pool)).float()

    def sample_labels(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.pool[torch.randint(len(self.pool), (n,), generator=g)]
        return rows, torch.ones_like(rows)


def images_per_cpu_second(args, g_upsample: str, plain: bool) -> float:
    cfg = TrainingConfig(resolution=args.res, width=args.width, batch=args.batch, g_upsample=g_upsample)
    arch = Architecture(
        args.res, args.width, cfg.z_dim, VOCABULARY.dim, cfg.conditioning, cfg.g_conditioning, g_upsample
    )
    models = GanModels(cfg, arch, torch.device("cpu"))
    if plain:
        for module in models.g.modules():
            if isinstance(module, NearestDoublingConv):
                module.__class__ = PlainDoublingConv  # same weights, the old arithmetic
    labels = RandomLabels()
    g = torch.Generator().manual_seed(0)
    bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    start = 0.0
    for step in range(WARMUP + args.steps):
        if step == WARMUP:
            start = time.process_time()
        x = torch.rand((args.batch, 3, args.res, args.res), generator=g) * 2 - 1
        cond, mask = labels.sample_labels(args.batch, g)
        train_step(models, cfg, (x, cond, mask), labels, step, torch.device("cpu"), bf16=bf16)
    return args.steps * args.batch / (time.process_time() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.res} px, width {args.width}, batch {args.batch}, {args.steps} steps, {args.threads} thread(s)")
    plain = images_per_cpu_second(args, "resize", plain=True)
    rows = [
        ("resize, plain", plain),
        ("resize", images_per_cpu_second(args, "resize", plain=False)),
        ("transpose", images_per_cpu_second(args, "transpose", plain=False)),
    ]
    for name, rate in rows:
        print(f"{name:14s} {rate:7.1f} img per CPU-second  ×{rate / plain:.2f}")


if __name__ == "__main__":
    main()
