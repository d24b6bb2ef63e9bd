"""A discriminator for a model exported without one, so that it can be fine-tuned.

Models exported before their cards listed a discriminator (the first shipped model
among them) carry only the EMA generator. A fine-tune needs a D that already tells
this G's faces from real ones; one trained from random weights would first have to
catch up while G learns from its noise. So D is trained alone against the model's G,
which stays as it is (:func:`ml.trainer.train_step` with ``train_g=False``), on the
faces the model was trained on (or faces like them), and shipped beside G.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from mangagan_app.config import TrainingConfig
from mangagan_app.core.files import atomic_write_bytes
from mangagan_app.ml.checkpoint import (
    DISCRIMINATOR_FORMAT,
    discriminator_file,
    load_generator,
    safetensors_bytes,
    update_card,
)
from mangagan_app.ml.dataset import load_face_folder
from mangagan_app.ml.trainer import GanModels, epoch_order, train_step


@dataclass(frozen=True)
class FittedDiscriminator:
    path: Path
    steps: int
    faces: int
    d_real: float  # mean D(real) and D(fake) as probabilities over the last 50 steps
    d_fake: float


def fit_discriminator(
    weights: str | Path,
    data: str | Path,
    steps: int,
    *,
    seed: int = 0,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FittedDiscriminator:
    """Train a D for the model ``weights`` on the faces in ``data`` for ``steps`` steps,
    write it as ``NAME.discriminator.safetensors`` and list it in the card.

    The training settings (loss, attribute classifier, batch, learning rate) are the
    ones the card says the model was trained with. G's weights and the card's sha256
    do not change, so faces made with the model still restore. Raises
    ``InterruptedError`` (writing nothing) when ``should_stop`` returns True.
    """
    generator, card = load_generator(weights)
    arch = generator.arch
    saved = (card.get("training") or {}).get("config") or {}
    cfg = replace(
        TrainingConfig.from_dict(saved),
        data=str(data),
        seed=seed,
        init_from="",
        augment="none",
        freeze_d=0,
        **{k: getattr(arch, k) for k in ("resolution", "width", "z_dim", "conditioning", "g_conditioning")},
        g_upsample=arch.g_upsample,
        d_norm=arch.d_norm,
    )
    faces = load_face_folder(data, arch.resolution)
    if len(faces) < cfg.batch:
        raise ValueError(f"{data}: {len(faces)} faces are fewer than one batch of {cfg.batch}")
    device = torch.device("cpu")
    models = GanModels(cfg, arch, device)
    models.g.load_state_dict(generator.state_dict())
    models.g.train()
    models.d.train()
    recent: list[dict[str, float]] = []
    per_epoch = len(faces) // cfg.batch
    for step in range(steps):
        if should_stop is not None and should_stop():
            raise InterruptedError("stopped; no discriminator was written")
        order, flips = epoch_order(seed, step // per_epoch, len(faces))
        rows = slice((step % per_epoch) * cfg.batch, (step % per_epoch + 1) * cfg.batch)
        stats = train_step(models, cfg, faces.batch(order[rows], flips[rows]), faces, step, device, train_g=False)
        recent = (recent + [stats])[-50:]
        if progress is not None:
            progress(step + 1, steps, stats)
    tensors = {k: v.detach().cpu().contiguous() for k, v in models.d.state_dict().items()}
    data_bytes, _ = safetensors_bytes(tensors, {"format": DISCRIMINATOR_FORMAT})
    path = discriminator_file(weights)
    atomic_write_bytes(path, data_bytes)
    fitted = FittedDiscriminator(
        path,
        steps,
        len(faces),
        round(sum(s["d_real"] for s in recent) / max(1, len(recent)), 3),
        round(sum(s["d_fake"] for s in recent) / max(1, len(recent)), 3),
    )
    update_card(
        weights,
        discriminator={
            "file": path.name,
            "sha256": hashlib.sha256(data_bytes).hexdigest(),
            "fitted": {
                "steps": steps,
                "faces": len(faces),
                "data": str(faces.source),
                "d_real": fitted.d_real,
                "d_fake": fitted.d_fake,
                "note": "trained alone against this generator, which was not changed",
            },
        },
    )
    return fitted
