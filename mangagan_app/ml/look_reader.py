"""The look reader: reads a face's continuous factors (head tilt, eye size, hair length…).

The sketchbook knows, for every face it draws, the :class:`~mangagan_app.core.sketchbook.look.Look`
behind it. A small CNN (the tagger's body with one regression output per factor of
:data:`~mangagan_app.core.sketchbook.look.LOOK_FACTORS`) learns to read those factors back
from the pixels; it then reads the faces a generator draws, which is what finding and
measuring named sliders needs (``ml.named_sliders``). Trained on faces drawn with a seed
of its own, softened and noised as GAN faces are, and shipped beside the tagger as
``weights/look_reader/look_reader.safetensors`` + ``.json`` (its card holds the factors,
their mean and spread on the sketchbook, and R² per factor on unseen faces).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mangagan_app.config import WEIGHTS_DIR
from mangagan_app.core.sketchbook.look import LOOK_FACTORS
from mangagan_app.ml.tagger import (
    INPUT_SIZES,
    TAGGER_SIZE,
    TaggerArchitecture,
    TaggerNet,
    fit_one_cycle,
    read_net_with_card,
    soften,
    to_tagger_input,
    write_net_with_card,
)

LOOK_READER_FORMAT = "mangagan-look-reader/1"
DEFAULT_LOOK_READER = WEIGHTS_DIR / "look_reader" / "look_reader.safetensors"
FACTOR_KEYS = tuple(factor.key for factor in LOOK_FACTORS)

ProgressFn = Callable[[int, int, float], None]  # (step, total steps, loss)


class LookReaderError(ValueError):
    """A look reader file that cannot be used; names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        super().__init__(f"{path}: {reason}")


class LookReader:
    """A trained reader in eval mode: faces in, factors out (in the factors' own units)."""

    def __init__(self, net: TaggerNet, mean: np.ndarray, std: np.ndarray, card: dict | None = None):
        self.net = net.eval()
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.card = card or {}

    @torch.inference_mode()
    def read(self, images: np.ndarray | torch.Tensor, batch: int = 256) -> np.ndarray:
        """(N, len(FACTOR_KEYS)) float32 factors of uint8 faces (N, H, W, 3) or (N, 3, H, W)."""
        scores = [
            self.net(to_tagger_input(images[i : i + batch], self.net.arch.input_size))[1]
            for i in range(0, len(images), batch)
        ]
        standard = torch.cat(scores).numpy() if scores else np.zeros((0, len(FACTOR_KEYS)), np.float32)
        return standard * self.std + self.mean


def r_squared(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per column: 1 - (residual variance / variance of ``actual``); 1 is a perfect reading."""
    residual = ((predicted - actual) ** 2).mean(0)
    spread = actual.var(0)
    return 1.0 - residual / np.maximum(spread, 1e-12)


def train_look_reader(
    images: np.ndarray,
    factors: np.ndarray,
    *,
    width: int = 32,
    epochs: int = 8,
    batch: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> LookReader:
    """Train a reader on uint8 faces ``images`` (N, H, W, 3) and their ``factors`` (N, F).

    The factors are standardised (the mean and spread are kept in the reader), the loss is
    the mean squared error, the learning rate one-cycle. Faces are softened and noised but
    never flipped or shifted: a flip turns a head tilt into its opposite, a shift moves
    the framing the offset factors measure. Deterministic for a seed on one machine; when
    ``should_stop()`` turns true the reader trained so far is returned. Raises
    ``ValueError`` for empty or mismatched inputs.
    """
    if len(images) == 0 or len(images) != len(factors) or factors.shape[1] != len(FACTOR_KEYS):
        raise ValueError(f"need one row of {len(FACTOR_KEYS)} factors per face, got {factors.shape} for {len(images)}")
    mean, std = factors.mean(0), np.maximum(factors.std(0), 1e-6)
    targets = torch.from_numpy((factors - mean) / std).float()
    faces = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # (N, 3, H, W) uint8
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    # Read at the faces' own size where a tagger can (128-px faces at 128), else at 64 px.
    size = max((s for s in INPUT_SIZES if s <= faces.shape[-1]), default=TAGGER_SIZE)
    net = TaggerNet(TaggerArchitecture(width=width, cond_dim=len(FACTOR_KEYS), input_size=size))

    def loss_of(rows: torch.Tensor) -> torch.Tensor:
        _, predicted = net(soften(to_tagger_input(faces[rows], net.arch.input_size), generator))
        return F.mse_loss(predicted, targets[rows])

    fit_one_cycle(
        net,
        torch.arange(len(faces)),
        loss_of,
        generator,
        epochs=epochs,
        batch=batch,
        lr=lr,
        progress=progress,
        should_stop=should_stop,
    )
    return LookReader(net.requires_grad_(False), mean, std)


def save_look_reader(reader: LookReader, path: str | Path, *, training: dict, r2: np.ndarray) -> tuple[Path, Path]:
    """Write ``path`` (.safetensors) and its card (.json) atomically; returns both paths."""
    factors = [
        {"key": f.key, "name": f.name, "mean": float(m), "std": float(s), "r2_unseen": float(r)}
        for f, m, s, r in zip(LOOK_FACTORS, reader.mean, reader.std, r2, strict=True)
    ]
    return write_net_with_card(reader.net, path, LOOK_READER_FORMAT, factors=factors, training=training)


def load_look_reader(path: str | Path | None = None) -> LookReader:
    """The reader at ``path`` (default: the shipped one) on the CPU, in eval mode.

    Raises :class:`LookReaderError` naming the file when the weights or card are missing,
    corrupted, made for other factors or do not fit the card's architecture.
    """
    net, card = read_net_with_card(
        Path(path or DEFAULT_LOOK_READER).with_suffix(".safetensors"),
        LOOK_READER_FORMAT,
        LookReaderError,
        "the look reader",
        check=lambda card: (
            None
            if [f.get("key") for f in card.get("factors", [])] == list(FACTOR_KEYS)
            else "the reader was trained for other look factors"
        ),
    )
    mean = np.array([f["mean"] for f in card["factors"]], np.float32)
    std = np.array([f["std"] for f in card["factors"]], np.float32)
    return LookReader(net, mean, std, card)
