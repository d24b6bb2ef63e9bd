"""Training faces in memory: a uint8 image tensor with attribute targets and known-masks.

Images are decoded once (in worker processes for big folders) so that a training
step only indexes a tensor. Anything that can yield ``(image path, tag text or
None)`` pairs — a sketchbook folder, any folder of faces with kohya ``.txt``
sidecars, a reviewed dataset's kept crops — becomes a :class:`FaceSet` through
:func:`faces_from_items`. The trainer needs only the :class:`TrainingFaces`
protocol, so a streamed memmap-shard set can replace the in-memory one later.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from mangagan_app.core.attributes import VOCABULARY, ConflictingTagsError, Vocabulary, choose_vocabulary
from mangagan_app.core.catalogue import DB_NAME as CATALOGUE_FILE
from mangagan_app.core.catalogue import kept_training_items
from mangagan_app.core.decoding import IMAGE_SUFFIXES, decode_many

log = logging.getLogger(__name__)

# Below this many images a process pool costs more to start than it saves.
_POOL_THRESHOLD = 3000
_CHUNK = 500


class TrainingFaces(Protocol):
    """What the trainer draws batches from."""

    resolution: int
    vocabulary: Vocabulary  # the layout of the conditions and masks

    def __len__(self) -> int: ...

    def batch(self, indices: torch.Tensor, flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images (B, 3, H, W) float in [-1, 1], conditions (B, dim), known-masks (B, dim)."""
        ...

    def sample_conditions(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` complete condition vectors (B, dim) drawn like the data's labels."""
        ...

    def sample_labels(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` labels of random faces: the complete condition (B, dim) G is asked for,
        and that face's own known-mask (B, dim), so a fake is judged with exactly the
        label knowledge a real face has. The conditions are those of
        :meth:`sample_conditions` for the same generator state."""
        ...

    @property
    def known_columns(self) -> torch.Tensor:
        """(dim,) 1 where at least one face knows that condition slot, else 0."""
        ...

    def summary(self) -> dict:
        """A JSON-able description for config files and model cards."""
        ...


@dataclass
class FaceSet:
    """Faces held in memory.

    ``images`` (N, 3, H, W) uint8, ``cond`` and ``mask`` (N, dim) float32; ``mask`` is
    0 where a label is unknown (all zeros for an image without tags).
    """

    images: torch.Tensor
    cond: torch.Tensor
    mask: torch.Tensor
    source: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    vocabulary: Vocabulary = VOCABULARY
    # The data's tags the vocabulary does not know (tag → faces): said once per run.
    left_out_tags: dict[str, int] = field(default_factory=dict)
    # Of those, the ones on every face (see core.attributes.VocabularyChoice).
    tags_on_every_face: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._fake_pool = _complete_conditions(self.cond, self.mask, self.vocabulary)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, indices: torch.Tensor, flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.images[indices].float().div_(127.5).sub_(1.0)  # (B, 3, H, W) in [-1, 1]
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        return x, self.cond[indices], self.mask[indices]

    def sample_conditions(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.sample_labels(n, generator)[0]

    def sample_labels(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(len(self._fake_pool), (n,), generator=generator)
        return self._fake_pool[rows], self.mask[rows]

    @functools.cached_property
    def known_columns(self) -> torch.Tensor:
        # Read at every training step: computed once over all N faces, not per step.
        return self.mask.amax(dim=0)

    def summary(self) -> dict:
        tagged = int((self.mask.sum(dim=1) > 0).sum())
        offset = self.vocabulary.offset("hair_colour")
        hair = self.vocabulary.group("hair_colour")
        known = self.mask[:, offset] > 0
        counts = self.cond[known, offset : offset + len(hair.values)].sum(dim=0)
        return {
            "source": self.source,
            "images": len(self),
            "tagged": tagged,
            "untagged": len(self) - tagged,
            "skipped": len(self.skipped),
            "resolution": self.resolution,
            "hair_colour_counts": {v: int(c) for v, c in zip(hair.values, counts.tolist(), strict=True)},
            **({"tags_left_out": _most_frequent(self.left_out_tags)} if self.left_out_tags else {}),
            **({"tags_on_every_face": list(self.tags_on_every_face)} if self.tags_on_every_face else {}),
        }


def _most_frequent(counts: dict[str, int], shown: int = 20) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:shown])


class NoImagesError(ValueError):
    """The data holds no image that could be decoded; says whether there were none or all were bad."""

    def __init__(self, source: str, skipped: list[tuple[str, str]]):
        where = source or "the data"
        if skipped:
            reason = f"none of its {len(skipped)} images could be read (first: {skipped[0][0]}: {skipped[0][1]})"
        else:
            reason = f"no images ({', '.join(IMAGE_SUFFIXES)}) there"
        super().__init__(f"{where}: {reason}; nothing to train on")


def folder_items(folder: str | Path) -> list[tuple[Path, str | None]]:
    """(image, tag text or None) for every image in ``folder`` (not recursive), sorted.

    The tag text comes from the kohya sidecar ``<stem>.txt``. Raises
    ``FileNotFoundError``/``NotADirectoryError`` when ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    items = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        sidecar = path.with_suffix(".txt")
        text = sidecar.read_text(encoding="utf-8", errors="replace") if sidecar.is_file() else None
        items.append((path, text))
    return items


def load_face_folder(
    folder: str | Path,
    resolution: int,
    *,
    vocabulary: str | Vocabulary = "default",
    base: Vocabulary = VOCABULARY,
    progress: Callable[[int, int], None] | None = None,
) -> FaceSet:
    """All faces of ``folder`` at ``resolution`` px, with labels from their ``.txt`` sidecars
    in the vocabulary ``core.attributes.choose_vocabulary(vocabulary, …, base)`` picks for them.

    A dataset folder made by the Dataset tab / ``mangagan crop`` (it holds a
    catalogue) gives its *kept* crops and their tags instead, so reviewed data trains
    without an export step. Raises ``FileNotFoundError`` for a missing folder and
    ``ValueError`` when it holds no usable image. Bad images are logged (naming the
    file) and skipped.
    """
    items = kept_training_items(folder) if (Path(folder) / CATALOGUE_FILE).is_file() else folder_items(folder)
    choice = choose_vocabulary(vocabulary, (text for _, text in items), base)
    faces = faces_from_items(items, resolution, source=str(folder), vocabulary=choice.vocabulary, progress=progress)
    faces.left_out_tags = choice.left_out
    faces.tags_on_every_face = choice.on_every_face
    return faces


def faces_from_items(
    items: Iterable[tuple[Path, str | None]],
    resolution: int,
    *,
    source: str = "",
    vocabulary: Vocabulary = VOCABULARY,
    progress: Callable[[int, int], None] | None = None,
) -> FaceSet:
    """Decode ``(path, tag text)`` pairs into a :class:`FaceSet`.

    Tag text is parsed leniently (tags outside the vocabulary are ignored); tag text
    naming two values of one exclusive group makes that image untagged, with a
    warning. ``progress(done, total)`` is called as images are decoded. Raises
    ``ValueError`` when no image could be decoded.
    """
    items = list(items)
    skipped: list[tuple[str, str]] = []
    arrays = _decode_all([str(p) for p, _ in items], resolution, progress)
    images, conds, masks = [], [], []
    for (path, text), arr in zip(items, arrays, strict=True):
        if isinstance(arr, str):
            log.warning("skipping %s: %s", path, arr)
            skipped.append((str(path), arr))
            continue
        vec, mask = labels_from_tags(path, text, vocabulary)
        images.append(arr)
        conds.append(vec)
        masks.append(mask)
    if not images:
        raise NoImagesError(source, skipped)
    image_tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
    return FaceSet(
        image_tensor,
        torch.from_numpy(np.stack(conds)),
        torch.from_numpy(np.stack(masks)),
        source=source,
        skipped=skipped,
        vocabulary=vocabulary,
    )


def labels_from_tags(path: Path, text: str | None, vocabulary: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """(condition, known-mask) of one image from its tag text; all unknown when there is
    none or the tags contradict each other (logged, naming ``path``)."""
    unknown_all = (np.zeros(vocabulary.dim, np.float32), np.zeros(vocabulary.dim, np.float32))
    if text is None or not text.strip():
        return unknown_all
    try:
        attrs, _ = vocabulary.parse_tags(text, strict=False)
    except ConflictingTagsError as exc:
        log.warning("%s: tags ignored, %s", path, exc)
        return unknown_all
    return vocabulary.encode(attrs)


def _decode_all(paths: list[str], size: int, progress: Callable[[int, int], None] | None) -> list[np.ndarray | str]:
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    out: list[np.ndarray | str] = []
    if len(paths) < _POOL_THRESHOLD:
        for chunk in chunks:
            out += decode_many(chunk, size)
            if progress:
                progress(len(out), len(paths))
        return out
    # Pillow decoding holds the GIL: worker processes (spawn, so no torch state is forked).
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(4, multiprocessing.cpu_count()), mp_context=ctx) as pool:
        for result in pool.map(decode_many, chunks, [size] * len(chunks)):
            out += result
            if progress:
                progress(len(out), len(paths))
    return out


def _complete_conditions(cond: torch.Tensor, mask: torch.Tensor, vocabulary: Vocabulary) -> torch.Tensor:
    """The data's labels with every unknown exclusive group filled by a draw from that
    group's known values (uniform when nothing is known), free tags left as given.

    The generator is trained on these, so it sees each attribute about as often as
    the data shows it.
    """
    rng = np.random.default_rng(0)
    pool = cond.clone().numpy()
    m = mask.numpy()
    start = 0
    for group in vocabulary.groups:
        n = len(group.values)
        if group.exclusive:
            unknown = m[:, start] == 0
            counts = Counter(pool[~unknown, start : start + n].argmax(axis=1).tolist())
            weights = np.array([counts.get(i, 0) for i in range(n)], np.float64)
            weights = weights / weights.sum() if weights.sum() > 0 else np.full(n, 1.0 / n)
            picks = rng.choice(n, size=int(unknown.sum()), p=weights)
            block = np.zeros((int(unknown.sum()), n), np.float32)
            block[np.arange(len(picks)), picks] = 1.0
            pool[unknown, start : start + n] = block
        start += n
    return torch.from_numpy(pool)
