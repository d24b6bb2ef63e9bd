"""An attribute tagger independent of the GAN: reads hair colour, hair style, eye colour
and free tags from a face, and gives the feature vector the evaluation measures in.

It is a small CNN trained on labelled faces: the shipped one on sketchbook faces with
their exact labels, drawn with a seed of its own (never the default model's training
seed), so it judges the generator without sharing anything with the discriminator.
It can as well be trained on any folder of faces with kohya tag sidecars, partially
tagged ones included: the loss is masked to the labels each face has, and the tagger
learns (and its card names, ``known_groups``) only the groups the data actually tags
(:func:`known_groups`). Faces of any size are resized to the tagger's input size
(:data:`TAGGER_SIZE` px unless it was trained at another, e.g. 128 px for 128-px models:
a downsample to 64 px loses the small features such a model draws).
Training augments with blur, noise and small shifts so that the slightly soft faces a
GAN draws are read like crisp ones.

Shipped as ``weights/tagger/tagger.safetensors`` + ``tagger.json`` (a card with the
architecture, vocabulary, training data and per-group accuracy on unseen faces); it
lives in a subfolder so the app never mistakes it for a generator.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from mangagan_app.config import TAGGER_INPUT_SIZES, WEIGHTS_DIR
from mangagan_app.core.attributes import VOCABULARY, Vocabulary
from mangagan_app.core.files import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

TAGGER_FORMAT = "mangagan-tagger/1"
INPUT_SIZES = TAGGER_INPUT_SIZES
TAGGER_SIZE = INPUT_SIZES[0]
DEFAULT_TAGGER = WEIGHTS_DIR / "tagger" / "tagger.safetensors"

ProgressFn = Callable[[int, int, float], None]  # (step, total steps, loss)
StopFn = Callable[[], bool]


class TaggerError(ValueError):
    """A tagger file that cannot be used; names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class TaggerArchitecture:
    width: int = 32
    feature_dim: int = 128
    cond_dim: int = VOCABULARY.dim
    input_size: int = TAGGER_SIZE

    def __post_init__(self):
        if self.input_size not in INPUT_SIZES:
            raise ValueError(f"tagger input size {self.input_size}: must be one of {', '.join(map(str, INPUT_SIZES))}")

    @classmethod
    def from_dict(cls, data: dict) -> TaggerArchitecture:
        # Cards from before 128-px taggers have no input size: they read 64 px.
        size = int(data.get("input_size", TAGGER_SIZE))
        return cls(int(data["width"]), int(data["feature_dim"]), int(data["cond_dim"]), size)


class TaggerNet(nn.Module):
    """``(B, 3, S, S)`` in [-1, 1], S = ``arch.input_size`` → features ``(B, feature_dim)`` and logits
    ``(B, cond_dim)``. Each block halves the face down to 4×4, so a 128-px tagger has one block more."""

    def __init__(self, arch: TaggerArchitecture):
        super().__init__()
        self.arch = arch
        w = arch.width

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
            )

        extra = [block(w, w) for _ in range(arch.input_size // TAGGER_SIZE - 1)]  # down to (B, w, 32, 32)
        self.body = nn.Sequential(
            block(3, w),  # (B, w, S/2, S/2)
            *extra,
            block(w, 2 * w),  # (B, 2w, 16, 16)
            block(2 * w, 4 * w),  # (B, 4w, 8, 8)
            block(4 * w, 4 * w),  # (B, 4w, 4, 4)
            nn.Flatten(),  # (B, 64w) — kept spatial: eyes and glasses sit in known places
        )
        self.embed = nn.Sequential(nn.Linear(64 * w, arch.feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(arch.feature_dim, arch.cond_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.embed(self.body(x))  # (B, feature_dim)
        return features, self.head(features)  # (B, cond_dim)


def _group_slices(vocabulary: Vocabulary) -> list[tuple[str, slice, bool]]:
    out, start = [], 0
    for g in vocabulary.groups:
        out.append((g.name, slice(start, start + len(g.values)), g.exclusive))
        start += len(g.values)
    return out


def known_groups(
    cond: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor, vocabulary: Vocabulary = VOCABULARY
) -> tuple[str, ...]:
    """The groups these labels (both (N, dim)) can teach, in vocabulary order.

    An exclusive group counts when at least one face's mask knows it. The free tags
    count when at least one face is tagged with one of them: a sidecar that never
    names a free tag leaves them marked known (absent means "not present"), but a
    folder where no face ever has one says nothing about them.
    """
    cond, mask = np.asarray(cond), np.asarray(mask) > 0
    out = []
    for name, s, exclusive in _group_slices(vocabulary):
        if mask[:, s.start].any() if exclusive else (cond[:, s][mask[:, s]] > 0.5).any():
            out.append(name)
    return tuple(out)


def group_columns(groups: Iterable[str], vocabulary: Vocabulary = VOCABULARY) -> np.ndarray:
    """(dim,) float32: 1 over the slots of ``groups``, 0 elsewhere. Raises ``KeyError`` for an unknown group."""
    wanted = set(groups)
    unknown = wanted - {g.name for g in vocabulary.groups}
    if unknown:
        raise KeyError(f"not a vocabulary group: {', '.join(sorted(unknown))}")
    cols = np.zeros(vocabulary.dim, np.float32)
    for name, s, _ in _group_slices(vocabulary):
        if name in wanted:
            cols[s] = 1.0
    return cols


def labelled_rows(mask: torch.Tensor, groups: Iterable[str], vocabulary: Vocabulary = VOCABULARY) -> torch.Tensor:
    """Indices (K,) of the faces whose mask (N, dim) knows at least one label in ``groups``."""
    return ((mask * torch.from_numpy(group_columns(groups, vocabulary))).amax(dim=1) > 0).nonzero().view(-1)


def scores_from_logits(logits: torch.Tensor, vocabulary: Vocabulary = VOCABULARY) -> torch.Tensor:
    """Per-slot probabilities (B, dim): softmax within each exclusive group, sigmoid for free tags."""
    parts = [
        logits[:, s].softmax(dim=1) if exclusive else logits[:, s].sigmoid()
        for _, s, exclusive in _group_slices(vocabulary)
    ]
    return torch.cat(parts, dim=1)


def tagger_loss(
    logits: torch.Tensor, cond: torch.Tensor, vocabulary: Vocabulary = VOCABULARY, *, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy per exclusive group plus binary cross-entropy summed over the free tags.

    Summed, not averaged, over the tags: each tag is a question as hard as a
    group's, and averaged they were too faint to learn (every tag read "absent").
    ``mask`` (B, dim), default all ones, is 1 where a label counts: each group's term
    is averaged over the faces that know it, and a group no face of the batch knows
    adds nothing, so unknown labels neither pull nor dilute.
    """
    known = torch.ones_like(cond) if mask is None else mask
    loss = logits.new_zeros(())
    for _, s, exclusive in _group_slices(vocabulary):
        if exclusive:
            rows = known[:, s.start]
            ce = F.cross_entropy(logits[:, s], cond[:, s].argmax(dim=1), reduction="none")
            loss = loss + (ce * rows).sum() / rows.sum().clamp_min(1.0)
        else:
            bce = F.binary_cross_entropy_with_logits(logits[:, s], cond[:, s], reduction="none") * known[:, s]
            loss = loss + bce.sum() / known[:, s].amax(dim=1).sum().clamp_min(1.0)
    return loss


def to_tagger_input(images: np.ndarray | torch.Tensor, size: int = TAGGER_SIZE) -> torch.Tensor:
    """uint8 faces — numpy (B, H, W, 3) or torch (B, 3, H, W) — as (B, 3, size, size) floats in [-1, 1].

    Raises ``ValueError`` for anything that is not a batch of RGB images.
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2) if isinstance(images, np.ndarray) else images
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a batch of RGB images, got shape {tuple(x.shape)}")
    x = x.float().div(127.5).sub(1.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


class AttributeTagger:
    """A trained tagger in eval mode with its card."""

    def __init__(self, net: TaggerNet, card: dict, vocabulary: Vocabulary = VOCABULARY):
        self.net = net.eval()
        self.card = card
        self.vocabulary = vocabulary
        self.sha256: str = str(card.get("sha256", ""))

    @property
    def feature_dim(self) -> int:
        return self.net.arch.feature_dim

    @property
    def input_size(self) -> int:
        return self.net.arch.input_size

    @property
    def known_groups(self) -> tuple[str, ...]:
        """The groups the tagger learnt, as its card names them; every group for cards from
        before the card said (those taggers were trained on complete sketchbook labels)."""
        return tuple(self.card.get("known_groups") or (g.name for g in self.vocabulary.groups))

    @torch.no_grad()
    def read(self, images: np.ndarray | torch.Tensor, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Features (N, feature_dim) and per-slot scores (N, dim), both float32, of uint8 faces."""
        feats, scores = [], []
        for i in range(0, len(images), batch):
            f, logits = self.net(to_tagger_input(images[i : i + batch], self.input_size))
            feats.append(f.numpy())
            scores.append(scores_from_logits(logits, self.vocabulary).numpy())
        if not feats:
            return (np.zeros((0, self.feature_dim), np.float32), np.zeros((0, self.vocabulary.dim), np.float32))
        return np.concatenate(feats), np.concatenate(scores)

    @torch.inference_mode()
    def logits(self, images: np.ndarray | torch.Tensor, batch: int = 256) -> np.ndarray:
        """Per-slot logits (N, dim) float32 of uint8 faces: what the scores are a squashed form of."""
        parts = [
            self.net(to_tagger_input(images[i : i + batch], self.input_size))[1].numpy()
            for i in range(0, len(images), batch)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.vocabulary.dim), np.float32)

    def features(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """Feature vectors (N, feature_dim) float32 of uint8 faces."""
        return self.read(images)[0]


def decide(scores: np.ndarray, vocabulary: Vocabulary = VOCABULARY) -> np.ndarray:
    """0/1 readings (N, dim): the argmax of each exclusive group, free tags above 0.5."""
    out = np.zeros_like(scores)
    for _, s, exclusive in _group_slices(vocabulary):
        part = scores[:, s]
        if exclusive:
            out[np.arange(len(part)), s.start + part.argmax(axis=1)] = 1.0
        else:
            out[:, s] = part > 0.5
    return out


def accuracy_report(
    scores: np.ndarray,
    cond: np.ndarray,
    vocabulary: Vocabulary = VOCABULARY,
    *,
    mask: np.ndarray | None = None,
    groups: Iterable[str] | None = None,
) -> dict:
    """How well ``scores`` read the true labels ``cond`` (both (N, dim)).

    Only ``groups`` (default: all) are reported, each over the faces whose ``mask``
    (N, dim; default all ones) knows it. ``groups``: accuracy per exclusive group
    (share of faces whose value is read right; NaN when no face knows the group) and,
    for the free tags, the mean per-tag balanced accuracy (the mean of the two shares
    below, so that always answering "absent" scores 50 %, not the 80-90 % a rare
    tag's plain accuracy would give). ``values``: for each slot tag, the share of
    faces that have it and are read as having it (recall); free tags also get
    ``<tag>:absent``, the share without it read as without. ``faces_per_group``: how
    many faces each group was measured on.
    """
    read = decide(scores, vocabulary)
    known = np.ones(cond.shape, bool) if mask is None else np.asarray(mask) > 0
    wanted = None if groups is None else set(groups)
    accuracy, values, faces = {}, {}, {}
    for name, s, exclusive in _group_slices(vocabulary):
        if wanted is not None and name not in wanted:
            continue
        group = vocabulary.group(name)
        rows = known[:, s.start] if exclusive else known[:, s].any(axis=1)
        faces[name] = int(rows.sum())
        if exclusive:
            right = read[rows, s].argmax(axis=1) == cond[rows, s].argmax(axis=1)
            accuracy[name] = float(right.mean()) if rows.any() else float("nan")
        balanced = []
        for j, value in enumerate(group.values):
            slot = s.start + j
            has = (cond[:, slot] > 0.5) & known[:, slot]
            without = ~(cond[:, slot] > 0.5) & known[:, slot]
            if has.any():
                values[group.tag(value)] = float(read[has, slot].mean())
            if not exclusive and without.any():
                values[group.tag(value) + ":absent"] = float(1.0 - read[without, slot].mean())
                if has.any():
                    balanced.append(0.5 * (values[group.tag(value)] + values[group.tag(value) + ":absent"]))
        if not exclusive:
            accuracy[name] = float(np.mean(balanced)) if balanced else float("nan")
    return {"faces": int(len(cond)), "faces_per_group": faces, "groups": accuracy, "values": values}


# ---- training -----------------------------------------------------------------------------------
def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips, shifts of up to 3 px, softening and noise."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    dx, dy = (int(v) for v in torch.randint(-3, 4, (2,), generator=generator))
    return soften(torch.roll(x, shifts=(dy, dx), dims=(2, 3)), generator)


def soften(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Half the faces blurred, all with a little noise: what separates GAN faces from crisp ones."""
    b = x.shape[0]
    soft = (torch.rand(b, generator=generator) < 0.5).view(-1, 1, 1, 1)
    blurred = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear", align_corners=False)
    x = torch.where(soft, blurred, x)
    sigma = torch.rand(b, 1, 1, 1, generator=generator) * 0.08
    return x + sigma * torch.randn(x.shape, generator=generator)


def train_tagger(
    images: torch.Tensor,
    cond: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    groups: Iterable[str] | None = None,
    arch: TaggerArchitecture = TaggerArchitecture(),
    epochs: int = 6,
    batch: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    init: TaggerNet | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> TaggerNet:
    """Train a tagger on uint8 faces ``images`` (N, 3, H, W) with labels ``cond`` (N, dim).

    ``mask`` (N, dim, default all ones) is 1 where a label is known; only ``groups``
    (default: :func:`known_groups` of the labels) are learnt, with the masked
    :func:`tagger_loss`. Faces that know no label in those groups are left out: they
    would add no gradient, only time. ``init`` continues training that net (in
    place) instead of a fresh one. One-cycle learning rate over ``epochs``;
    ``progress(step, total, loss)`` every 20 steps; when ``should_stop()`` turns true
    the net trained so far is returned. Deterministic for a seed on one machine.
    Raises ``ValueError`` for empty or mismatched inputs or when no face knows a label
    to learn, ``KeyError`` for a group the vocabulary does not have.
    """
    if len(images) == 0 or len(images) != len(cond) or (mask is not None and mask.shape != cond.shape):
        raise ValueError(f"need as many labels (and masks) as faces, got {len(images)} faces and {len(cond)} labels")
    mask = torch.ones_like(cond) if mask is None else mask
    groups = known_groups(cond, mask) if groups is None else tuple(groups)
    mask = mask * torch.from_numpy(group_columns(groups))
    usable = labelled_rows(mask, groups)
    if len(usable) == 0:
        raise ValueError("no face knows a label of the groups to learn")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = init if init is not None else TaggerNet(arch)
    net.requires_grad_(True)

    def loss_of(rows: torch.Tensor) -> torch.Tensor:
        _, logits = net(_augment(to_tagger_input(images[rows], net.arch.input_size), generator))
        return tagger_loss(logits, cond[rows], mask=mask[rows])

    fit_one_cycle(
        net, usable, loss_of, generator, epochs=epochs, batch=batch, lr=lr, progress=progress, should_stop=should_stop
    )
    return net.eval()


def fit_one_cycle(
    net: nn.Module,
    rows: torch.Tensor,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator,
    *,
    epochs: int,
    batch: int,
    lr: float,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> None:
    """Train ``net`` in place with AdamW and a one-cycle learning rate: ``epochs`` passes over
    ``rows`` (shuffled by ``generator``) in batches, each step minimising ``loss_of(batch rows)``.

    ``progress(step, total, loss)`` every 20 steps; stops between steps when ``should_stop()``.
    """
    steps_per_epoch = max(1, len(rows) // batch)
    total = epochs * steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.2)
    net.train()
    step = 0
    for _ in range(epochs):
        order = rows[torch.randperm(len(rows), generator=generator)]
        for k in range(steps_per_epoch):
            if should_stop and should_stop():
                return
            loss = loss_of(order[k * batch : (k + 1) * batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if progress and (step % 20 == 0 or step == total):
                progress(step, total, float(loss.detach()))


# ---- files ----------------------------------------------------------------------------------------
def save_tagger(
    net: TaggerNet,
    path: str | Path,
    *,
    training: dict,
    accuracy: dict,
    groups: Iterable[str] | None = None,
    vocabulary: Vocabulary = VOCABULARY,
) -> tuple[Path, Path]:
    """Write ``path`` (.safetensors) and its card (.json) atomically; returns both paths.

    The card's ``known_groups`` are the ``groups`` the net learnt (default: every group).
    """
    return write_net_with_card(
        net,
        path,
        TAGGER_FORMAT,
        input_size=net.arch.input_size,
        vocabulary=vocabulary.to_json(),
        known_groups=list(groups) if groups is not None else [g.name for g in vocabulary.groups],
        training=training,
        accuracy_unseen=accuracy,
    )


def write_net_with_card(net: TaggerNet, path: str | Path, fmt: str, **card_entries) -> tuple[Path, Path]:
    """Write ``net`` to ``path`` (.safetensors) and a card (.json) holding ``fmt``, the sha256, the
    architecture and ``card_entries``, both atomically; returns both paths."""
    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    data = save_safetensors(tensors, metadata={"format": fmt})
    atomic_write_bytes(path, data)
    card = {
        "format": fmt,
        "weights_file": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "architecture": asdict(net.arch),
        **card_entries,
        "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    card_path = path.with_suffix(".json")
    atomic_write_json(card_path, card)
    return path, card_path


def load_tagger(path: str | Path | None = None, vocabulary: Vocabulary = VOCABULARY) -> AttributeTagger:
    """The tagger at ``path`` (default: the shipped one) on the CPU, in eval mode.

    Raises :class:`TaggerError` naming the file when the weights or card are missing,
    corrupted, made for another vocabulary or do not fit the card's architecture.
    """
    st_path = Path(path or DEFAULT_TAGGER).with_suffix(".safetensors")
    net, card = read_net_with_card(
        st_path,
        TAGGER_FORMAT,
        TaggerError,
        "the tagger",
        check=lambda card: (
            None
            if card.get("vocabulary") == vocabulary.to_json()
            else "the tagger was trained for another attribute vocabulary"
        ),
    )
    return AttributeTagger(net, card, vocabulary)


def read_net_with_card(
    st_path: Path, fmt: str, error: type[ValueError], what: str, check: Callable[[dict], str | None]
) -> tuple[TaggerNet, dict]:
    """The net stored at ``st_path`` (frozen, eval mode) and its card, as :func:`write_net_with_card`
    wrote them. ``check(card)`` names what else makes the card unusable (None: nothing).

    Raises ``error(path, reason)`` naming the file when either file is missing or
    unreadable, the card is not ``fmt``, the sha256 does not match, ``check`` objects,
    or the weights do not fit the card's architecture.
    """
    card_path = st_path.with_suffix(".json")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        data = st_path.read_bytes()
    except FileNotFoundError as exc:
        raise error(exc.filename, f"missing ({what} needs its .safetensors and .json)") from None
    except (OSError, ValueError) as exc:
        raise error(card_path, f"unreadable: {exc}") from None
    if not isinstance(card, dict) or card.get("format") != fmt:
        raise error(card_path, f"not a {fmt} card")
    if hashlib.sha256(data).hexdigest() != card.get("sha256"):
        raise error(st_path, "sha256 does not match the card: the file is corrupted or was replaced")
    if reason := check(card):
        raise error(card_path, reason)
    try:
        net = TaggerNet(TaggerArchitecture.from_dict(card["architecture"]))
        net.load_state_dict(load_safetensors(data), strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as exc:
        raise error(st_path, f"does not fit the card's architecture: {str(exc).splitlines()[0]}") from None
    return net.requires_grad_(False).eval(), card
