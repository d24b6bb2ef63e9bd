"""Differentiable augmentation of what D sees, with a probability that adapts to overfitting.

With a few thousand faces D memorises the training set: it scores every real face
near 1 and every fake near 0, and G gets no gradient worth following. Showing D
randomly altered images — real and fake alike, in D's step and in G's step, so G
learns through the alteration — takes that away (DiffAugment, Zhao et al. 2020:
colour, translation by up to 1/8, cutout of 1/2). Each alteration is applied to
each image with probability ``p``; :class:`AdaptiveProbability` steers ``p`` with
StyleGAN2-ADA's overfitting heuristic r_t = E[sign(D(real))] (Karras et al. 2020):
r_t near 1 means D is sure of every real face, so p rises; below the target it falls.
The trainer leaves colour out by default (``TrainingConfig.augment_operations``): its
conditions name colours, as DiffAugment's conditional BigGAN runs used translation and
cutout only.

Everything here is made of differentiable tensor operations and is the identity at
``p = 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mangagan_app.config import AUGMENT_OPERATIONS

TRANSLATION = 1 / 8
CUTOUT = 1 / 2


def augment(
    x: torch.Tensor, p: float, generator: torch.Generator, operations: tuple[str, ...] = AUGMENT_OPERATIONS
) -> torch.Tensor:
    """``x`` (B, 3, H, W) in [-1, 1] with each of ``operations`` applied per image with probability ``p``.

    The draws come from ``generator`` (on the CPU), so the same seed alters the same
    images the same way. Returns ``x`` itself when ``p`` is 0.
    """
    if p <= 0.0:
        return x
    for name in operations:
        chosen = (torch.rand(len(x), generator=generator) < p).to(x.device).view(-1, 1, 1, 1)
        x = torch.where(chosen, _ALTERATIONS[name](x, generator), x)
    return x


def _uniform(x: torch.Tensor, generator: torch.Generator, low: float, high: float) -> torch.Tensor:
    """One draw per image from U[low, high), shaped (B, 1, 1, 1) to broadcast over ``x``."""
    draw = torch.rand((len(x), 1, 1, 1), generator=generator) * (high - low) + low
    return draw.to(device=x.device, dtype=x.dtype)


def _colour(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Brightness ± 0.5, saturation × [0, 2), contrast × [0.5, 1.5), as in DiffAugment."""
    x = x + _uniform(x, generator, -0.5, 0.5)
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * _uniform(x, generator, 0.0, 2.0) + grey
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, generator, 0.5, 1.5) + mean


def _translation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to 1/8 of its size in x and y, filling with zeros (mid grey)."""
    b, _, h, w = x.shape
    sy, sx = max(1, int(h * TRANSLATION)), max(1, int(w * TRANSLATION))
    dy = torch.randint(-sy, sy + 1, (b, 1, 1), generator=generator).to(x.device)
    dx = torch.randint(-sx, sx + 1, (b, 1, 1), generator=generator).to(x.device)
    padded = F.pad(x, [sx, sx, sy, sy])  # (B, 3, H + 2sy, W + 2sx)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + sy - dy  # (B, H, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w) + sx - dx  # (B, 1, W)
    picked = padded[torch.arange(b, device=x.device).view(b, 1, 1), :, rows, cols]  # (B, H, W, 3)
    return picked.permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Zero (mid grey) a square of half the image's size at a random place in each image."""
    b, _, h, w = x.shape
    ch, cw = int(h * CUTOUT), int(w * CUTOUT)
    top = torch.randint(0, h - ch + 1, (b, 1, 1), generator=generator).to(x.device)
    left = torch.randint(0, w - cw + 1, (b, 1, 1), generator=generator).to(x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_ALTERATIONS = {"colour": _colour, "translation": _translation, "cutout": _cutout}


class AdaptiveProbability:
    """The augmentation probability p, adjusted every ``interval`` steps towards r_t = ``target``.

    ``kimg`` is how many thousand real images it takes p to go from 0 to 1 at the
    fastest (ADA uses 500k for runs of many million images; this app's runs are a few
    hundred thousand). With ``adaptive`` False p stays at ``p``.
    """

    def __init__(
        self,
        *,
        p: float = 0.0,
        target: float = 0.6,
        kimg: float = 100.0,
        batch: int = 64,
        interval: int = 4,
        adaptive: bool = True,
    ):
        self.p = float(p)
        self.target = target
        self.step_size = batch * interval / (kimg * 1000.0)
        self.interval = interval
        self.adaptive = adaptive
        self._signs = 0.0
        self._count = 0

    def observe(self, r_t: float) -> None:
        """Add one step's r_t = mean sign of D(real); every ``interval`` steps, move p by one step."""
        self._signs += r_t
        self._count += 1
        if self._count >= self.interval:
            if self.adaptive:
                direction = 1.0 if self._signs / self._count > self.target else -1.0
                self.p = min(1.0, max(0.0, self.p + self.step_size * direction))
            self._signs, self._count = 0.0, 0

    def state(self) -> dict:
        """What a checkpoint keeps so a resumed run continues with the same p."""
        return {"p": self.p, "signs": self._signs, "count": self._count}

    def load(self, state: dict) -> None:
        # A fixed (or zero) probability is the run's setting, so a resume that changes it is obeyed;
        # only an adaptive p is learned state to carry on from.
        if self.adaptive:
            self.p = float(state["p"])
        self._signs, self._count = float(state["signs"]), int(state["count"])
