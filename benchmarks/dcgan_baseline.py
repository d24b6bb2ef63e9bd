"""A plain DCGAN at 64 px, in the style of pytorch/examples: the baseline the app's trainer is held against.

Unconditional and fp32. G: z (100) → 4×4×8·ngf, then stride-2 transposed convolutions with
BatchNorm + ReLU down to 32×32×ngf, then to 3 channels + Tanh. D: stride-2 convolutions with
LeakyReLU(0.2), BatchNorm from the second one on, and a final 4×4 convolution to one logit.
BCE with logits, Adam lr 2e-4 betas (0.5, 0.999), ngf = ndf = 32, batch 64, N(0, 0.02)
initialisation, random horizontal flips.

    python benchmarks/dcgan_baseline.py FACES RUN [--threads 1] [--seed 0] [--checkpoint-minutes 5]

FACES is read with the app's loader (``load_face_folder(FACES, 64)``), so the baseline trains on
exactly the pixels the app's trainer sees; tags are ignored. RUN receives ``stats.jsonl`` (a line
every 25 steps: step, time, d_real and d_fake as mean sigmoid probabilities, d_loss, g_loss,
img_per_sec), ``preview.png`` (8×8 faces from fixed noise) and ``checkpoint.pt`` (plain state
dicts; read with ``torch.load(..., weights_only=True)``), the last two every few minutes and when
the run ends. It trains until stopped: Ctrl+C (SIGINT) or SIGTERM finishes the step, saves and
exits 0; a second Ctrl+C aborts at once.
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from mangagan_app.core.files import atomic_write_bytes
from mangagan_app.ml.dataset import load_face_folder
from mangagan_app.ml.sampling import image_grid, to_uint8

Z_DIM = 100
RESOLUTION = 64
TICK_STEPS = 25
PREVIEW_COLUMNS = 8
CHECKPOINT = "checkpoint.pt"


class Generator(nn.Module):
    """``G(z) -> image``: z (B, 100) → (B, 3, 64, 64) in [-1, 1]."""

    def __init__(self, ngf: int = 32, z_dim: int = Z_DIM):
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(
            nn.ConvTranspose2d(z_dim, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(inplace=True),  # (B, 8ngf, 4, 4)
            *_up(ngf * 8, ngf * 4),  # (B, 4ngf, 8, 8)
            *_up(ngf * 4, ngf * 2),  # (B, 2ngf, 16, 16)
            *_up(ngf * 2, ngf),  # (B, ngf, 32, 32)
            nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False),
            nn.Tanh(),  # (B, 3, 64, 64)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(len(z), self.z_dim, 1, 1))


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class Discriminator(nn.Module):
    """``D(image) -> logit``: (B, 3, 64, 64) → (B,)."""

    def __init__(self, ndf: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),  # (B, ndf, 32, 32)
            *_down(ndf, ndf * 2),  # (B, 2ndf, 16, 16)
            *_down(ndf * 2, ndf * 4),  # (B, 4ndf, 8, 8)
            *_down(ndf * 4, ndf * 8),  # (B, 8ndf, 4, 4)
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),  # (B, 1, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


def _down(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, inplace=True)]


def _init_weights(module: nn.Module) -> None:
    """N(0, 0.02) convolution weights; BatchNorm scale N(1, 0.02), shift 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def load_generator(run_dir: str | Path) -> Generator:
    """The generator saved in ``run_dir/checkpoint.pt``, in eval mode.

    Raises ``FileNotFoundError`` when there is no checkpoint.
    """
    state = torch.load(Path(run_dir) / CHECKPOINT, map_location="cpu", weights_only=True)
    g = Generator(state["config"]["width"], state["config"]["z_dim"])
    g.load_state_dict(state["G"])
    return g.eval()


def _save(run_dir: Path, state: dict, g: Generator, fixed_z: torch.Tensor) -> Path:
    buf = io.BytesIO()
    torch.save(state, buf)
    path = atomic_write_bytes(run_dir / CHECKPOINT, buf.getvalue())
    g.eval()  # the preview uses the running BatchNorm statistics, as an evaluation would
    with torch.no_grad():
        grid = image_grid(to_uint8(g(fixed_z)), PREVIEW_COLUMNS)
    g.train()
    png = io.BytesIO()
    Image.fromarray(grid).save(png, format="PNG")
    atomic_write_bytes(run_dir / "preview.png", png.getvalue())
    return path


def train(
    images: torch.Tensor,
    run_dir: str | Path,
    *,
    should_stop: Callable[[], bool],
    seed: int = 0,
    batch: int = 64,
    width: int = 32,
    checkpoint_minutes: float = 5.0,
    progress: Callable[[dict], None] | None = None,
) -> int:
    """Train on ``images`` (N, 3, 64, 64) uint8 into ``run_dir`` until ``should_stop()`` (polled before
    every step) returns True; returns the number of steps done.

    ``progress`` receives each stats.jsonl record. Raises ``ValueError`` when there are fewer
    images than one batch or ``run_dir`` already holds a checkpoint.
    """
    if len(images) < batch:
        raise ValueError(f"{len(images)} images are fewer than one batch of {batch}")
    run_dir = Path(run_dir)
    if (run_dir / CHECKPOINT).exists():
        raise ValueError(f"{run_dir} already holds a run; choose another folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    g, d = Generator(width), Discriminator(width)
    _init_weights(g)
    _init_weights(d)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    draws = torch.Generator().manual_seed(seed)
    fixed_z = torch.randn(PREVIEW_COLUMNS**2, Z_DIM, generator=torch.Generator().manual_seed(seed + 7))
    config = {"width": width, "z_dim": Z_DIM, "batch": batch, "seed": seed, "resolution": RESOLUTION}
    started = last_save = time.monotonic()
    step = 0
    tick: dict[str, float] = {}
    tick_seconds = 0.0

    def state() -> dict:
        return {
            "format": "dcgan-baseline/1",
            "config": config,
            "step": step,
            "elapsed_seconds": time.monotonic() - started,
            "G": g.state_dict(),
            "D": d.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
        }

    with open(run_dir / "stats.jsonl", "w", encoding="utf-8") as stats_file:
        order, position = torch.empty(0, dtype=torch.long), len(images)
        while not should_stop():
            if position + batch > len(images):  # an epoch is complete: a new order
                order, position = torch.randperm(len(images), generator=draws), 0
            indices, position = order[position : position + batch], position + batch
            t0 = time.perf_counter()
            x = images[indices].float().div_(127.5).sub_(1.0)  # (B, 3, 64, 64)
            flip = torch.rand(batch, generator=draws) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
            fake = g(torch.randn(batch, Z_DIM, generator=draws))

            real_logit, fake_logit = d(x), d(fake.detach())
            loss_real = F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
            loss_fake = F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit))
            d_loss = loss_real + loss_fake
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()

            g_logit = d(fake)
            g_loss = F.binary_cross_entropy_with_logits(g_logit, torch.ones_like(g_logit))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()

            step += 1
            tick_seconds += time.perf_counter() - t0
            for key, value in (
                ("d_real", torch.sigmoid(real_logit.detach()).mean()),
                ("d_fake", torch.sigmoid(fake_logit.detach()).mean()),
                ("d_loss", d_loss.detach()),
                ("g_loss", g_loss.detach()),
            ):
                tick[key] = tick.get(key, 0.0) + float(value)
            if step % TICK_STEPS == 0:
                record = {
                    "step": step,
                    "time": round(time.monotonic() - started, 2),
                    **{k: round(v / TICK_STEPS, 5) for k, v in tick.items()},
                    "img_per_sec": round(TICK_STEPS * batch / tick_seconds, 2),
                }
                stats_file.write(json.dumps(record) + "\n")
                stats_file.flush()
                if progress:
                    progress(record)
                tick, tick_seconds = {}, 0.0
            if time.monotonic() - last_save >= checkpoint_minutes * 60:
                _save(run_dir, state(), g, fixed_z)
                last_save = time.monotonic()
    _save(run_dir, state(), g, fixed_z)
    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("faces", help="folder of faces the app's loader reads (tags are ignored)")
    parser.add_argument("run_dir", help="folder for stats.jsonl, preview.png and checkpoint.pt")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0, help="minutes between checkpoints (5)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    stop_requested = False

    def request_stop(signum, frame) -> None:
        nonlocal stop_requested
        if stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop_requested = True
        print("\nstopping after this step and saving a checkpoint (Ctrl+C again to abort)", file=sys.stderr)

    # Installed before loading, so that a stop asked for while the faces load is not lost.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)

    def show(record: dict) -> None:
        print(
            f"step {record['step']} | {record['img_per_sec']:.0f} img/s | D(real) {record['d_real']:.3f} "
            f"D(fake) {record['d_fake']:.3f} | D loss {record['d_loss']:.3f} G loss {record['g_loss']:.3f}",
            file=sys.stderr,
            flush=True,
        )

    try:
        images = load_face_folder(args.faces, RESOLUTION).images
        steps = train(
            images,
            args.run_dir,
            should_stop=lambda: stop_requested,
            seed=args.seed,
            checkpoint_minutes=args.checkpoint_minutes,
            progress=show,
        )
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"dcgan_baseline: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    print(f"stopped at step {steps}; checkpoint {Path(args.run_dir) / CHECKPOINT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
