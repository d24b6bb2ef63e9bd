"""The conditional DCGAN: a generator and a discriminator, readable block by block.

G maps noise ``z`` (B, 128) and a condition vector (B, dim) — one-hot per exclusive
attribute group, multi-hot for free tags, laid out by ``core.attributes.VOCABULARY``
— to an image (B, 3, H, W) in [-1, 1]. D returns a realness logit and, depending on
``conditioning``:

* ``"projection"`` (Miyato & Koyama 2018): the logit gains ``<embed(cond), features>``;
* ``"acgan"``: an auxiliary head predicts the condition vector (MakeGirlsMoe's choice);
* ``"both"``: the two together (the default, chosen by measurement; see the README).

G always sees the condition beside the noise at its input; with
``g_conditioning="film"`` every block's output is also scaled and shifted per
channel by a linear function of the condition (FiLM, Perez et al. 2018), so an
attribute that the first layer under-represents can still reach the later blocks.
The FiLM layers start at zero, i.e. as the identity, so a trained ``"input"``
generator can be warm-started into a ``"film"`` one without changing a pixel.

The resolution is 64 px (4 up-sampling blocks from 4×4) or 128 px (5 blocks). Channels
halve from the 4×4 end towards the image, from at most ``width × max_width_factor``
down to ``width``; a model grown from a smaller one (``trainer``: ``--init-from`` a
64-px model at ``--res 128``) keeps the smaller one's channels and adds a thinner block
at the image end (64 px width 32 → 128 px width 16, factor 16).

Two choices made for real anime faces (issue 14), both recorded in the architecture
so that models saved before them still load as what they were:

* ``g_upsample``: ``"transpose"`` doubles G's size with a 4×4 stride-2
  ``ConvTranspose2d``; ``"resize"`` with nearest-neighbour resizing and a 3×3
  convolution, the cure for checkerboards (Odena et al. 2016). Resize was the default
  for a while; measured, it drew mottled backgrounds and softer features on the
  sketchbook (Fréchet 207–373 in four 20-minute runs against 159–172 for transpose)
  and was on par on real faces, so transpose is the default (README, "Training on
  your own faces").
* ``d_norm="spectral"``: every weight of D is spectrally normalised (Miyato et al.
  2018), which keeps the projection term from running away; ``"none"`` is the old D.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import torch
from torch import nn

from mangagan_app.config import D_NORMS, G_UPSAMPLES

CONDITIONINGS = ("projection", "acgan", "both")
G_CONDITIONINGS = ("input", "film")


@dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild the networks; stored in checkpoints and model cards."""

    resolution: int = 64
    width: int = 32
    z_dim: int = 128
    cond_dim: int = 38
    conditioning: str = "both"
    g_conditioning: str = "input"
    g_upsample: str = "transpose"
    d_norm: str = "spectral"
    max_width_factor: int = 8

    def __post_init__(self) -> None:
        if self.max_width_factor not in (1, 2, 4, 8, 16, 32, 64):
            raise ValueError(f"max_width_factor must be a power of two up to 64, not {self.max_width_factor}")
        if self.resolution not in (32, 64, 128):
            raise ValueError(f"resolution must be 32, 64 or 128, not {self.resolution}")
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, not {self.conditioning!r}")
        if self.g_conditioning not in G_CONDITIONINGS:
            raise ValueError(f"g_conditioning must be one of {G_CONDITIONINGS}, not {self.g_conditioning!r}")
        if self.g_upsample not in G_UPSAMPLES:
            raise ValueError(f"g_upsample must be one of {G_UPSAMPLES}, not {self.g_upsample!r}")
        if self.d_norm not in D_NORMS:
            raise ValueError(f"d_norm must be one of {D_NORMS}, not {self.d_norm!r}")
        if self.width < 1 or self.z_dim < 1 or self.cond_dim < 1:
            raise ValueError("width, z_dim and cond_dim must be positive")

    @property
    def blocks(self) -> int:
        """Up-/down-sampling blocks between 4×4 and the image size."""
        return int(math.log2(self.resolution // 4))

    def channels(self) -> list[int]:
        """Channels from the 4×4 end to the image end, e.g. width 32 at 64 px → [256, 128, 64, 32]."""
        return [self.width * min(self.max_width_factor, 2 ** (self.blocks - 1 - i)) for i in range(self.blocks)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Architecture:
        # A card lacks the settings that did not exist when it was written; its networks
        # were what the code built then: G conditioned at the input, transposed
        # convolutions, no normalisation in D.
        return cls(
            **{k: data[k] for k in ("resolution", "width", "z_dim", "cond_dim", "conditioning")},
            g_conditioning=data.get("g_conditioning", "input"),
            g_upsample=data.get("g_upsample", "transpose"),
            d_norm=data.get("d_norm", "none"),
            max_width_factor=data.get("max_width_factor", 8),
        )


class Generator(nn.Module):
    """``G(z, cond) -> image``: z (B, z_dim), cond (B, cond_dim) → (B, 3, H, W) in [-1, 1]."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        ch = arch.channels()
        # The condition is concatenated to z: cheap, and the auxiliary/projection
        # losses in D are what force G to obey it.
        self.stem = nn.Sequential(
            nn.Linear(arch.z_dim + arch.cond_dim, ch[0] * 16, bias=False),
            nn.Unflatten(1, (ch[0], 4, 4)),
            nn.BatchNorm2d(ch[0]),
            nn.ReLU(inplace=True),
        )  # (B, 8w, 4, 4)
        ups = []
        for c_in, c_out in zip(ch[:-1], ch[1:], strict=True):
            ups += [
                *_doubling(arch.g_upsample, c_in, c_out, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]  # each block doubles H and W: (B, 4w, 8, 8) → (B, 2w, 16, 16) → (B, w, 32, 32) at 64 px
        self.ups = nn.Sequential(*ups)
        self.block_length = len(ups) // (len(ch) - 1)
        self.to_rgb = nn.Sequential(*_doubling(arch.g_upsample, ch[-1], 3, bias=True), nn.Tanh())  # (B, 3, H, W)
        # One FiLM layer after the stem and after each up block: cond → (scale, shift) per channel.
        self.films = (
            nn.ModuleList(nn.Linear(arch.cond_dim, 2 * c) for c in ch) if arch.g_conditioning == "film" else None
        )
        _init_weights(self)
        if self.films is not None:
            for film in self.films:
                nn.init.zeros_(film.weight)
                nn.init.zeros_(film.bias)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.stem(torch.cat([z, cond], dim=1))
        if self.films is None:
            return self.to_rgb(self.ups(h))
        h = _film(self.films[0], h, cond)
        n = self.block_length
        for i, film in enumerate(self.films[1:]):
            h = _film(film, self.ups[n * i : n * (i + 1)](h), cond)  # one doubling, BatchNorm, ReLU
        return self.to_rgb(h)


def _doubling(kind: str, c_in: int, c_out: int, *, bias: bool) -> list[nn.Module]:
    """The layers that take (B, c_in, H, W) to (B, c_out, 2H, 2W): resize + 3×3 conv, or a transposed conv."""
    if kind == "transpose":
        return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)]
    # The Identity holds the place the resize layer had, so saved weights keep their names (ups.1.weight, …).
    return [nn.Identity(), NearestDoublingConv(c_in, c_out, 3, 1, 1, bias=bias)]


# Row k of the 4-tap kernel of a stride-2 transposed conv, as a sum of the 3 taps of a conv
# that reads a nearest-neighbour doubled image: even outputs see taps (0 | 1 + 2) of two
# input pixels, odd outputs (0 + 1 | 2) (see NearestDoublingConv).
_DOUBLED_TAPS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


class NearestDoublingConv(nn.Conv2d):
    """A 3×3 convolution of the input doubled by nearest-neighbour resizing, computed without
    the doubled image: the same function is a stride-2 4×4 transposed convolution whose
    kernel sums the 3×3 taps that fall on the same input pixel: 16 multiplications per
    input pixel and channel pair where ``conv(upsample(x))`` does 36, with the weights,
    and so the checkpoints, of the plain convolution. A whole training step is 1.32×
    (64 px) and 1.37× (128 px) faster on one CPU core, as fast as the transposed G
    (``benchmarks/g_doubling.py``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = _DOUBLED_TAPS.to(self.weight)
        kernel = torch.einsum("ka,oiab,lb->iokl", taps, self.weight, taps)  # (c_in, c_out, 4, 4)
        return nn.functional.conv_transpose2d(x, kernel, self.bias, stride=2, padding=1)


def _film(layer: nn.Linear, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """``h`` (B, C, H, W) scaled by 1 + γ and shifted by β, where (γ, β) = ``layer(cond)``, each (B, C)."""
    scale, shift = layer(cond).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
    return h * (1.0 + scale) + shift


class Discriminator(nn.Module):
    """``D(image, cond, mask) -> (logit (B,), aux_logits (B, cond_dim) or None)``.

    ``mask`` zeroes the condition slots that are unknown for an image, so an image
    without tags gets only the unconditional realness score. No batch norm: DRAGAN's
    gradient penalty is per sample and batch norm would couple the samples; spectral
    norm (``d_norm="spectral"``) acts on the weights and couples nothing.
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        ch = list(reversed(arch.channels()))  # [w, 2w, 4w, 8w] at 64 px
        layers = [nn.Conv2d(3, ch[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]  # (B, w, H/2, W/2)
        for c_in, c_out in zip(ch[:-1], ch[1:], strict=True):
            # each block halves H and W: (B, 2w, 16, 16) → (B, 4w, 8, 8) → (B, 8w, 4, 4) at 64 px
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        self.body = nn.Sequential(*layers, nn.Flatten())  # (B, 8w * 16)
        features = ch[-1] * 16
        self.realness = nn.Linear(features, 1)  # (B, 1)
        self.embed = (
            nn.Linear(arch.cond_dim, features, bias=False) if arch.conditioning in ("projection", "both") else None
        )
        self.aux = nn.Linear(features, arch.cond_dim) if arch.conditioning in ("acgan", "both") else None
        _init_weights(self)
        if arch.d_norm == "spectral":
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.utils.parametrizations.spectral_norm(m)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.body(x)
        logit = self.realness(h).squeeze(1)  # (B,)
        if self.embed is not None:
            known = cond if mask is None else cond * mask
            logit = logit + (self.embed(known) * h).sum(dim=1)
        aux = self.aux(h) if self.aux is not None else None  # (B, cond_dim)
        return logit, aux

    def freeze_blocks(self, count: int) -> None:
        """Stop training the first ``count`` down-sampling blocks (FreezeD, Mo et al. 2020):
        a fine-tune on few faces keeps the low-level features D learned on many."""
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        if not 0 <= count <= len(convs):
            raise ValueError(f"D has {len(convs)} blocks; cannot freeze {count}")
        for conv in convs[:count]:
            conv.requires_grad_(False)


# The tensors whose size follows the condition vector, and along which axis (after how
# many leading entries): G's input layer (noise first), G's FiLM layers, D's projection
# and D's attribute classifier (spectral norm's power-iteration vectors included).
_CONDITION_AXES = (
    (re.compile(r"^stem\.0\.weight$"), 1, "z_dim"),
    (re.compile(r"^films\.\d+\.weight$"), 1, None),
    (re.compile(r"^embed\.(weight|parametrizations\.weight\.original)$"), 1, None),
    (re.compile(r"^embed\.parametrizations\.weight\.0\._v$"), 0, None),
    (re.compile(r"^aux\.(weight|bias|parametrizations\.weight\.original)$"), 0, None),
    (re.compile(r"^aux\.parametrizations\.weight\.0\._u$"), 0, None),
)


def regrow_conditions(
    state: dict[str, torch.Tensor], old_slots: list[str], new_slots: list[str], z_dim: int
) -> dict[str, torch.Tensor]:
    """``state`` (a G or D state dict made for ``old_slots``) laid out for ``new_slots``.

    A slot both vocabularies name keeps its weights, wherever it now sits; a new slot
    starts at zero (it changes nothing until training teaches it); a slot the new
    vocabulary lacks is dropped.
    """
    if old_slots == new_slots:
        return state
    index = {name: i for i, name in enumerate(old_slots)}
    picks = [(new, index[name]) for new, name in enumerate(new_slots) if name in index]
    out = {}
    for key, tensor in state.items():
        rule = next(((axis, lead) for pattern, axis, lead in _CONDITION_AXES if pattern.match(key)), None)
        if rule is None:
            out[key] = tensor
            continue
        axis, lead = rule
        offset = z_dim if lead == "z_dim" else 0
        if tensor.shape[axis] != offset + len(old_slots):
            raise ValueError(f"{key} has {tensor.shape[axis]} condition entries, not {offset + len(old_slots)}")
        shape = list(tensor.shape)
        shape[axis] = offset + len(new_slots)
        grown = tensor.new_zeros(shape)
        grown.narrow(axis, 0, offset).copy_(tensor.narrow(axis, 0, offset))
        for new, old in picks:
            grown.select(axis, offset + new).copy_(tensor.select(axis, offset + old))
        out[key] = grown
    return out


def _init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) weights, BN scale N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
