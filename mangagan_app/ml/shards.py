"""Training faces bigger than memory: uint8 shards on disk, read a batch at a time.

A shard folder holds

* ``shard_00000.u8``, ``shard_00001.u8``, … — raw uint8 (rows, 3, H, W), C order,
  ``shard_rows`` faces each (the last one fewer);
* ``labels.u8`` — raw uint8 (N, 3, dim): condition, known-mask and the completed
  condition the generator is trained on (what :class:`FaceSet` derives in memory);
* ``manifest.json`` — format, resolution, counts, vocabulary and the data summary.
  It is written last, so a folder without it is an unfinished pack.

:class:`ShardSet` is a :class:`~mangagan_app.ml.dataset.TrainingFaces`: it maps the
shards and copies out only the rows of the batch asked for (sorted, so rows that
sit together on disk are read together), labels alike, then drops the mapped pages
from the process, so its memory does not grow with the size of the data set. Given the
same faces it returns exactly the batches and fake conditions a ``FaceSet`` does.
"""

from __future__ import annotations

import functools
import json
import logging
import mmap
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mangagan_app.core.attributes import VOCABULARY, Vocabulary
from mangagan_app.core.catalogue import DB_NAME as CATALOGUE_FILE
from mangagan_app.core.catalogue import kept_training_items
from mangagan_app.core.decoding import decode_many
from mangagan_app.core.files import atomic_write_bytes, atomic_write_json, new_folders
from mangagan_app.ml.dataset import FaceSet, NoImagesError, folder_items, labels_from_tags

log = logging.getLogger(__name__)

FORMAT = "mangagan-shards/1"
MANIFEST = "manifest.json"
LABELS = "labels.u8"
SHARD_ROWS = 8192  # 100 MB per shard at 64 px: few files, and a partial pack loses little
_DECODE_CHUNK = 500


def is_shard_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a finished pack (its manifest)."""
    return (Path(folder) / MANIFEST).is_file()


def shard_name(i: int) -> str:
    return f"shard_{i:05d}.u8"


class ShardWriter:
    """Appends faces to a new shard folder; :meth:`finish` writes labels and manifest.

    Each shard is written as a temporary file and renamed when full, so a kill
    leaves only whole shards and no manifest (which :meth:`discard` or a new pack
    clears). Raises ``FileExistsError`` when ``out`` already holds a pack.
    """

    def __init__(
        self,
        out: str | Path,
        resolution: int,
        *,
        shard_rows: int = SHARD_ROWS,
        vocabulary: Vocabulary = VOCABULARY,
        source: str = "",
    ):
        self.out = Path(out)
        if is_shard_folder(self.out):
            raise FileExistsError(f"{self.out} already holds packed shards; choose another folder")
        self.out.mkdir(parents=True, exist_ok=True)
        self.resolution, self.shard_rows, self.vocabulary, self.source = resolution, shard_rows, vocabulary, source
        self._cond: list[np.ndarray] = []
        self._mask: list[np.ndarray] = []
        self._shard_counts: list[int] = []
        self._fh = None
        self._rows_in_shard = 0
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return sum(self._shard_counts) + self._rows_in_shard

    def add(self, images: np.ndarray, cond: np.ndarray, mask: np.ndarray) -> None:
        """Append faces: ``images`` uint8 (n, H, W, 3), ``cond`` and ``mask`` (n, dim) of 0/1."""
        r = self.resolution
        if images.dtype != np.uint8 or images.shape[1:] != (r, r, 3):
            raise ValueError(f"expected uint8 faces of shape (n, {r}, {r}, 3), got {images.dtype} {images.shape}")
        chw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))  # (n, 3, H, W)
        self._cond.append(cond.astype(np.uint8))
        self._mask.append(mask.astype(np.uint8))
        done = 0
        while done < len(chw):
            if self._fh is None:
                self._fh = open(self._tmp_path(len(self._shard_counts)), "wb")  # noqa: SIM115 — closed in _close_shard
            take = min(len(chw) - done, self.shard_rows - self._rows_in_shard)
            self._fh.write(chw[done : done + take].tobytes())
            done += take
            self._rows_in_shard += take
            if self._rows_in_shard == self.shard_rows:
                self._close_shard()

    def finish(self) -> Path:
        """Close the last shard, write ``labels.u8`` then the manifest; returns the folder.

        Raises ``ValueError`` when no face was added.
        """
        if self._rows_in_shard:
            self._close_shard()
        if not self._shard_counts:
            raise NoImagesError(self.source, self.skipped)
        cond = np.concatenate(self._cond)
        mask = np.concatenate(self._mask)
        # A FaceSet over a broadcast placeholder image (no copy of the pixels) computes
        # the summary and the completed conditions exactly as training in memory would.
        n, r = len(cond), self.resolution
        placeholder = torch.zeros((1, 3, r, r), dtype=torch.uint8).expand(n, -1, -1, -1)
        labels_only = FaceSet(
            placeholder,
            torch.from_numpy(cond).float(),
            torch.from_numpy(mask).float(),
            source=self.source,
            skipped=self.skipped,
            vocabulary=self.vocabulary,
        )
        completed = labels_only._fake_pool.numpy().astype(np.uint8)
        labels = np.stack([cond, mask, completed], axis=1)  # (N, 3, dim)
        atomic_write_bytes(self.out / LABELS, np.ascontiguousarray(labels).tobytes())
        atomic_write_json(
            self.out / MANIFEST,
            {
                "format": FORMAT,
                "resolution": r,
                "count": n,
                "shard_rows": self.shard_rows,
                "shards": [{"file": shard_name(i), "count": c} for i, c in enumerate(self._shard_counts)],
                "vocabulary": self.vocabulary.to_json(),
                "summary": labels_only.summary(),
                "skipped": [{"file": f, "reason": why} for f, why in self.skipped],
            },
        )
        return self.out

    def discard(self) -> None:
        """Remove every file this writer made (an unfinished pack is not kept)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        for i in range(len(self._shard_counts) + 1):
            (self.out / shard_name(i)).unlink(missing_ok=True)
            self._tmp_path(i).unlink(missing_ok=True)

    def _tmp_path(self, i: int) -> Path:
        return self.out / f".{shard_name(i)}.tmp"

    def _close_shard(self) -> None:
        i = len(self._shard_counts)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        os.replace(self._tmp_path(i), self.out / shard_name(i))
        self._shard_counts.append(self._rows_in_shard)
        self._rows_in_shard = 0


@dataclass
class PackResult:
    folder: Path
    faces: int
    skipped: int
    stopped: bool


def pack_faces(
    data: str | Path,
    out: str | Path,
    resolution: int,
    *,
    shard_rows: int = SHARD_ROWS,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PackResult:
    """Decode the faces of ``data`` (a folder with ``.txt`` sidecars, or a reviewed dataset's
    kept crops) at ``resolution`` px into a shard folder ``out``, a chunk at a time.

    Memory holds one window of decoded chunks, never the whole set. Bad images are
    logged (naming the file), listed in the manifest and skipped. ``progress(done,
    total)`` follows the decoding; when ``should_stop()`` turns true the shards
    written so far are removed and the result says ``stopped``. Raises
    ``FileNotFoundError``/``NotADirectoryError`` for a missing ``data`` folder,
    ``FileExistsError`` when ``out`` already holds a pack and ``ValueError`` when no
    image could be decoded.
    """
    items = kept_training_items(data) if (Path(data) / CATALOGUE_FILE).is_file() else folder_items(data)
    with new_folders(out):  # a pack that fails leaves no empty folder behind
        writer = ShardWriter(out, resolution, shard_rows=shard_rows, source=str(data))
        try:
            stopped = _pack_items(writer, items, workers, progress, should_stop)
            if stopped:
                writer.discard()
                return PackResult(Path(out), len(writer), len(writer.skipped), True)
            writer.finish()
        except BaseException:
            writer.discard()
            raise
    return PackResult(Path(out), len(writer), len(writer.skipped), False)


def _pack_items(
    writer: ShardWriter,
    items: list[tuple[Path, str | None]],
    workers: int,
    progress: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> bool:
    chunks = [items[i : i + _DECODE_CHUNK] for i in range(0, len(items), _DECODE_CHUNK)]
    window = max(1, workers) * 2  # chunks decoded at once: bounded memory
    done = 0

    def write(chunk: list[tuple[Path, str | None]], arrays: list) -> None:
        images, conds, masks = [], [], []
        for (path, text), arr in zip(chunk, arrays, strict=True):
            if isinstance(arr, str):
                log.warning("skipping %s: %s", path, arr)
                writer.skipped.append((str(path), arr))
                continue
            cond, mask = labels_from_tags(path, text, writer.vocabulary)
            images.append(arr)
            conds.append(cond)
            masks.append(mask)
        if images:
            writer.add(np.stack(images), np.stack(conds), np.stack(masks))

    # Pillow decoding holds the GIL: worker processes (spawn, so no torch state is forked).
    pool = (
        ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        if workers > 1 and len(chunks) > 1
        else None
    )
    try:
        for start in range(0, len(chunks), window):
            if should_stop is not None and should_stop():
                return True
            group = chunks[start : start + window]
            paths = [[str(p) for p, _ in c] for c in group]
            results: Iterable = (
                pool.map(decode_many, paths, [writer.resolution] * len(paths))
                if pool
                else (decode_many(p, writer.resolution) for p in paths)
            )
            for chunk, arrays in zip(group, results, strict=True):
                write(chunk, arrays)
                done += len(chunk)
                if progress:
                    progress(done, len(items))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return False


class ShardSet:
    """Faces streamed from a shard folder (see the module docstring).

    Raises ``FileNotFoundError`` when the folder has no manifest and ``ValueError``
    naming the file when the manifest, labels or a shard do not fit together or
    were made for another attribute vocabulary.
    """

    def __init__(self, folder: str | Path, vocabulary: Vocabulary = VOCABULARY):
        self.folder = Path(folder)
        manifest_path = self.folder / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{self.folder}: no {MANIFEST} here (not a packed data set, or unfinished)")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            if manifest.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} manifest")
            self.resolution = int(manifest["resolution"])
            self._count = int(manifest["count"])
            self._shard_rows = int(manifest["shard_rows"])
            shards = manifest["shards"]
            if sum(int(e["count"]) for e in shards) != self._count or self._count < 1:
                raise ValueError(f"the shards hold {sum(int(e['count']) for e in shards)} faces, not {self._count}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{manifest_path}: {exc}") from None
        if manifest.get("vocabulary") != vocabulary.to_json():
            raise ValueError(f"{manifest_path}: packed for another attribute vocabulary; pack the data again")
        self._summary = {**manifest.get("summary", {}), "shards": str(self.folder)}
        r = self.resolution
        self._shards = [self._map(entry["file"], int(entry["count"]) * 3 * r * r) for entry in shards]
        self.vocabulary = vocabulary
        self._dim = vocabulary.dim
        self._labels = self._map(LABELS, self._count * 3 * self._dim)

    def _map(self, name: str, expected: int) -> mmap.mmap:
        path = self.folder / name
        size = path.stat().st_size if path.is_file() else -1
        if size != expected:
            raise ValueError(f"{path}: {'missing' if size < 0 else f'{size} bytes'}, expected {expected}")
        with open(path, "rb") as fh:
            return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)

    def __len__(self) -> int:
        return self._count

    def _gather(self, mapping: mmap.mmap, row_shape: tuple[int, ...], rows: np.ndarray) -> np.ndarray:
        """A copy of ``rows`` (ascending) of ``mapping`` seen as (n, *row_shape) uint8."""
        out = np.frombuffer(mapping, np.uint8).reshape(-1, *row_shape)[rows]
        # Give the pages back: they stay in the page cache (cheap to read again) but
        # no longer count against this process, whose memory then does not grow
        # with the number of faces read.
        mapping.madvise(mmap.MADV_DONTNEED)
        return out

    def _images(self, indices: np.ndarray) -> np.ndarray:
        """uint8 (B, 3, H, W) for ``indices``, in the order given."""
        r = self.resolution
        order = np.argsort(indices, kind="stable")
        ordered = indices[order]  # ascending: rows next to each other on disk are read together
        images = np.empty((len(indices), 3, r, r), np.uint8)
        shard_of = ordered // self._shard_rows
        for s in np.unique(shard_of):
            sel = shard_of == s
            images[order[sel]] = self._gather(self._shards[s], (3, r, r), ordered[sel] - s * self._shard_rows)
        return images

    def _label_rows(self, indices: np.ndarray) -> np.ndarray:
        """uint8 (B, 3, dim): condition, mask, completed condition for ``indices``, in the order given."""
        order = np.argsort(indices, kind="stable")
        labels = np.empty((len(indices), 3, self._dim), np.uint8)
        labels[order] = self._gather(self._labels, (3, self._dim), indices[order])
        return labels

    def batch(self, indices: torch.Tensor, flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = indices.numpy().astype(np.int64)
        images, labels = self._images(idx), self._label_rows(idx)
        x = torch.from_numpy(images).float().div_(127.5).sub_(1.0)  # (B, 3, H, W) in [-1, 1]
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        y = torch.from_numpy(labels).float()
        return x, y[:, 0], y[:, 1]

    def sample_conditions(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.sample_labels(n, generator)[0]

    def sample_labels(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(self._count, (n,), generator=generator).numpy()
        labels = torch.from_numpy(self._label_rows(rows.astype(np.int64))).float()
        return labels[:, 2], labels[:, 1]

    @functools.cached_property
    def known_columns(self) -> torch.Tensor:
        masks = np.frombuffer(self._labels, np.uint8).reshape(-1, 3, self._dim)[:, 1]
        return torch.from_numpy(masks.max(axis=0).astype(np.float32))

    def summary(self) -> dict:
        return dict(self._summary)
