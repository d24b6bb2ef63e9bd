"""From seeds and attributes to images: condition vectors, noise, grids."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from mangagan_app.core.attributes import VOCABULARY, Attributes, Vocabulary


def complete_condition(attrs: Attributes, rng: np.random.Generator, vocabulary: Vocabulary = VOCABULARY) -> np.ndarray:
    """The condition vector of ``attrs`` with every unspecified exclusive group drawn
    uniformly from ``rng`` (a face always has some hair colour). Free tags not named
    are absent."""
    vec, mask = vocabulary.encode(attrs)
    start = 0
    for group in vocabulary.groups:
        n = len(group.values)
        if group.exclusive and mask[start] == 0:
            vec[start + int(rng.integers(n))] = 1.0
        start += n
    return vec


def noise(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """``n`` latent vectors (n, z_dim) from ``seed``; the same seed gives the same vectors."""
    return torch.randn((n, z_dim), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate(
    generator: torch.nn.Module, attrs: Attributes, n: int, seed: int, vocabulary: Vocabulary = VOCABULARY
) -> np.ndarray:
    """``n`` faces (n, H, W, 3) uint8 with ``attrs``; unspecified groups vary per face.

    Deterministic for a given seed, attributes and model on one machine.
    """
    rng = np.random.default_rng(seed)
    cond = torch.from_numpy(np.stack([complete_condition(attrs, rng, vocabulary) for _ in range(n)]))
    device = next(generator.parameters()).device
    z = noise(n, generator.arch.z_dim, seed)
    return to_uint8(generator(z.to(device), cond.to(device)))


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] → (B, H, W, 3) uint8."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def image_grid(images: np.ndarray, columns: int, pad: int = 2) -> np.ndarray:
    """Tile (B, H, W, 3) uint8 images into one (rows·(H+pad)+pad, …, 3) array, row by row."""
    b, h, w, _ = images.shape
    rows = -(-b // columns)
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(b):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = images[i]
    return grid


def preview_sheet(faces: np.ndarray, per_colour: int, width: int, height: int, *, gap: int = 2) -> np.ndarray:
    """A training preview laid out to fit ``width`` × ``height`` pixels, for people to read.

    ``faces`` (B, H, W, 3) uint8 come as the trainer draws them: one hair colour per
    ``per_colour`` faces (each with its own fixed noise). The sheet has one *column* per
    hair colour and one row per noise: as many rows as fit with faces as big as the
    width allows, up to their own size (at least one row). Every face gets the same size,
    a whole multiple of its own when there is room (its pixels stay square), and every
    gap is ``gap`` white pixels, so the grid lines are even. Returns (H', W', 3) uint8.
    """
    colours, side = len(faces) // per_colour, faces.shape[1]
    widest = max(1, (width - gap) // colours - gap)

    def tile_for(rows: int) -> int:
        return max(1, min(widest, (height - gap) // rows - gap))

    target = min(side, widest)
    rows = max([r for r in range(1, per_colour + 1) if tile_for(r) >= target], default=1)
    tile = tile_for(rows)
    if tile >= side:
        tile = tile // side * side
    resample = Image.Resampling.NEAREST if tile >= side else Image.Resampling.LANCZOS
    grid = np.full((rows * (tile + gap) + gap, colours * (tile + gap) + gap, 3), 255, np.uint8)
    for colour in range(colours):
        for row in range(rows):
            face = faces[colour * per_colour + row]
            if tile != side:
                face = np.asarray(Image.fromarray(face).resize((tile, tile), resample))
            y, x = gap + row * (tile + gap), gap + colour * (tile + gap)
            grid[y : y + tile, x : x + tile] = face
    return grid


def hair_colour_rows(
    columns: int, seed: int, vocabulary: Vocabulary = VOCABULARY, attrs: Attributes | None = None
) -> torch.Tensor:
    """Conditions for a sample sheet: one row per hair colour, ``columns`` faces per row.

    Each column keeps its other attributes in every row, so reading down a column
    shows the hair colour alone changing. Without ``attrs`` each column draws a few
    free tags (15 % each, as the training previews show them); with ``attrs`` the
    columns have exactly its tags and its fixed groups, the other groups drawn from ``seed``.
    """
    rng = np.random.default_rng(seed)
    hair = vocabulary.group("hair_colour")
    offset = vocabulary.offset("hair_colour")
    bases = []
    for _ in range(columns):
        if attrs is None:
            base = Attributes(tags={t for t in vocabulary.free_tags if rng.random() < 0.15})
        else:
            base = Attributes(choices=dict(attrs.choices), tags=set(attrs.tags))
        base.choices["hair_colour"] = hair.values[0]
        bases.append(complete_condition(base, rng, vocabulary))
    rows = []
    for i in range(len(hair.values)):
        for base in bases:
            vec = base.copy()
            vec[offset : offset + len(hair.values)] = 0.0
            vec[offset + i] = 1.0
            rows.append(vec)
    return torch.from_numpy(np.stack(rows))  # (rows·columns, dim)


@torch.no_grad()
def hair_colour_sheet(
    generator: torch.nn.Module, attrs: Attributes, columns: int, seed: int, vocabulary: Vocabulary = VOCABULARY
) -> np.ndarray:
    """Faces (rows·columns, H, W, 3) uint8 for :func:`hair_colour_rows`: each column keeps its noise too."""
    cond = hair_colour_rows(columns, seed, vocabulary, attrs)
    z = noise(columns, generator.arch.z_dim, seed).repeat(len(cond) // columns, 1)
    device = next(generator.parameters()).device
    return to_uint8(generator(z.to(device), cond.to(device)))


def relayout(cond: torch.Tensor, source: Vocabulary, target: Vocabulary) -> torch.Tensor:
    """Conditions (N, source.dim) laid out for ``target``: each slot moved to where ``target``
    has the same tag, slots ``source`` lacks at 0 (a model's own tags, off)."""
    if source == target:
        return cond
    where = {name: i for i, name in enumerate(source.slot_names())}
    out = cond.new_zeros((len(cond), target.dim))
    for i, name in enumerate(target.slot_names()):
        if name in where:
            out[:, i] = cond[:, where[name]]
    return out
