"""Is a generated face a copy of a training face? Nearest neighbours, calibrated.

The yardstick is how near *unseen* real faces — drawn like the training faces but
never trained on — come to the training set. A face closer to a training face than
99 % of unseen real faces are is a "near copy" (the memorisation criterion of the
evaluation); closer than 95 % of them is "close to a training face"; anything
farther is "original".

A :class:`FeatureIndex` holds the training set in the tagger's feature space,
projected on its leading principal axes and stored as float16 with the file
names (``weights/<model>.index.npz``, a few MB for 24k faces), plus the calibration
above. It is built by ``mangagan evaluate --write-index`` or on first use from the
training folder (:func:`index_training_set`).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mangagan_app.core.files import atomic_write_bytes
from mangagan_app.core.reference_faces import render_sketchbook_faces
from mangagan_app.ml.checkpoint import weights_files
from mangagan_app.ml.dataset import FaceSet, faces_from_items, folder_items
from mangagan_app.ml.tagger import AttributeTagger, load_tagger

log = logging.getLogger(__name__)

INDEX_FORMAT = "mangagan-index/1"
NEAR_COPY_QUANTILE = 0.01
CLOSE_QUANTILE = 0.05
VERDICTS = ("original", "close to a training face", "near copy")
INDEX_DIMS = 64

StageProgress = Callable[[str, int, int], None]  # (stage, done, total)
StopFn = Callable[[], bool]


class FeatureIndexError(ValueError):
    """A feature index that cannot be used; names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        super().__init__(f"{path}: {reason}")


# ---- distances ------------------------------------------------------------------------------------
def nearest(queries: np.ndarray, reference: np.ndarray, k: int = 1, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances (M, k) and rows (M, k) of the ``k`` nearest ``reference`` rows per query.

    Rows are flattened; any numeric dtype (uint8 pixels too) is converted to float32
    a chunk of ``reference`` at a time, so a big training set is never held as floats.
    Raises ``ValueError`` when the feature sizes differ or ``reference`` is empty.
    """
    q = torch.from_numpy(np.asarray(queries, np.float32).reshape(len(queries), -1))
    if len(reference) == 0 or q.shape[1] != int(np.prod(reference.shape[1:])):
        raise ValueError(f"cannot compare {tuple(q.shape)} with {tuple(reference.shape)}")
    k = min(k, len(reference))
    q_sq = (q * q).sum(dim=1, keepdim=True)
    best_d = torch.full((len(q), k), float("inf"))
    best_i = torch.zeros((len(q), k), dtype=torch.int64)
    for start in range(0, len(reference), chunk):
        r = torch.from_numpy(np.asarray(reference[start : start + chunk], np.float32).reshape(-1, q.shape[1]))
        d2 = q_sq + (r * r).sum(dim=1)[None, :] - 2.0 * q @ r.T  # (M, chunk)
        d, i = torch.topk(d2, min(k, len(r)), dim=1, largest=False)
        merged_d = torch.cat([best_d, d], dim=1)
        merged_i = torch.cat([best_i, i + start], dim=1)
        best_d, pick = torch.topk(merged_d, k, dim=1, largest=False)
        best_i = merged_i.gather(1, pick)
    return best_d.clamp_min(0).sqrt().numpy(), best_i.numpy()


def pixel_rms(distances: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """Distances between uint8 images → RMS difference per channel value in [0, 1]."""
    return np.asarray(distances) / (255.0 * np.sqrt(float(np.prod(image_shape))))


def mirrored(images: np.ndarray) -> np.ndarray:
    """uint8 faces (N, H, W, 3) flipped left-right (the trainer shows the model both)."""
    return np.ascontiguousarray(np.asarray(images)[:, :, ::-1])


def nearest_either_way(
    queries: np.ndarray, mirrored_queries: np.ndarray, reference: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distance (M,) and row (M,) of the nearest ``reference`` row to each query or its mirror image."""
    d, rows = nearest(np.concatenate([queries, mirrored_queries]), reference)  # one pass over the reference
    m = len(queries)
    use_mirror = d[m:, 0] < d[:m, 0]
    return np.where(use_mirror, d[m:, 0], d[:m, 0]), np.where(use_mirror, rows[m:, 0], rows[:m, 0])


PIXEL_COMPARE_SIDE = 32


def pixels_for_comparison(images: np.ndarray, side: int = PIXEL_COMPARE_SIDE) -> np.ndarray:
    """uint8 faces (N, H, W, 3) averaged over square blocks down to ``side`` px (float32, 0..255).

    A copy stays a copy at 32 px, and comparing 24k faces costs a quarter of 64 px.
    Sizes that ``side`` does not divide are compared as they are.
    """
    images = np.asarray(images)
    n, h, w, c = images.shape
    if h <= side or h % side or w % side:
        return images.astype(np.float32)
    f = h // side
    return images.reshape(n, side, f, w // f, f, c).mean(axis=(2, 4), dtype=np.float32)


@dataclass(frozen=True)
class Calibration:
    """Nearest-training-face distances that only ``NEAR_COPY_QUANTILE`` / ``CLOSE_QUANTILE``
    of unseen real faces come below."""

    near_copy: float
    close: float
    unseen_faces: int

    @classmethod
    def from_distances(cls, unseen_nearest: np.ndarray) -> Calibration:
        d = np.asarray(unseen_nearest, np.float64).ravel()
        if len(d) == 0:
            raise ValueError("calibration needs at least one unseen face")
        return cls(float(np.quantile(d, NEAR_COPY_QUANTILE)), float(np.quantile(d, CLOSE_QUANTILE)), len(d))

    def verdict(self, distance: float) -> str:
        """ "near copy", "close to a training face" or "original" for a nearest-face distance."""
        if distance < self.near_copy:
            return VERDICTS[2]
        if distance < self.close:
            return VERDICTS[1]
        return VERDICTS[0]


# ---- training and unseen faces --------------------------------------------------------------------
@dataclass
class TrainingFaces:
    """The faces of a training folder in memory, their file names, and sketchbook provenance if any."""

    faces: FaceSet
    names: list[str]
    folder: Path
    sketchbook_seed: int | None
    sketchbook_indices: np.ndarray  # (N,) int, -1 where unknown
    sketchbook_size: int | None


def load_training_faces(folder: str | Path, resolution: int, *, progress: StageProgress | None = None) -> TrainingFaces:
    """All faces of ``folder`` (images + kohya sidecars) at ``resolution`` px, with names.

    A sketchbook folder's ``metadata.jsonl`` gives the seed and index of each face, so
    that unseen faces can be drawn with another seed and thumbnails redrawn without
    the files. Raises ``FileNotFoundError``/``NotADirectoryError`` for a missing
    folder and ``ValueError`` when it holds no usable image.
    """
    folder = Path(folder)
    items = folder_items(folder)
    faces = faces_from_items(
        items,
        resolution,
        source=str(folder),
        progress=(lambda d, t: progress("loading training faces", d, t)) if progress else None,
    )
    skipped = {p for p, _ in faces.skipped}
    names = [p.name for p, _ in items if str(p) not in skipped]
    seed, size, by_name = _sketchbook_metadata(folder)
    indices = np.array([by_name.get(n, -1) for n in names], np.int64)
    return TrainingFaces(faces, names, folder, seed, indices, size)


def _sketchbook_metadata(folder: Path) -> tuple[int | None, int | None, dict[str, int]]:
    """(seed, size, file → index) from a sketchbook's ``metadata.jsonl``; Nones when absent or mixed."""
    try:
        lines = (folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError):
        return None, None, {}
    seeds = {r.get("seed") for r in records}
    sizes = {r.get("size") for r in records}
    if len(seeds) != 1 or len(sizes) != 1 or None in seeds:
        return None, None, {}
    return int(seeds.pop()), int(sizes.pop()), {r["file"]: int(r["index"]) for r in records if "file" in r}


def unseen_real_faces(
    training: TrainingFaces,
    count: int,
    *,
    unseen_dir: str | Path | None = None,
    workers: int = 2,
    progress: StageProgress | None = None,
    should_stop: StopFn | None = None,
) -> tuple[np.ndarray, str]:
    """Real faces the model never saw, (N, H, W, 3) uint8 at the training resolution, and where they came from.

    From ``unseen_dir`` (a folder of faces) when given, else drawn from the sketchbook
    with seed ``training seed + 1`` when the training folder is a sketchbook. Raises
    ``ValueError`` when neither is possible (a folder of your own crops has no
    unseen twin: pass one).
    """
    res = training.faces.resolution
    if unseen_dir is not None:
        faces = faces_from_items(folder_items(unseen_dir)[:count], res, source=str(unseen_dir))
        return faces.images.permute(0, 2, 3, 1).numpy(), f"{len(faces)} faces from {unseen_dir}"
    if training.sketchbook_seed is None or training.sketchbook_size is None:
        raise ValueError(
            f"{training.folder}: not a sketchbook folder (no metadata.jsonl with one seed); "
            "pass a folder of unseen faces drawn like the training faces"
        )
    seed = training.sketchbook_seed + 1
    drift = renderer_drift(training)
    images, _ = render_sketchbook_faces(
        seed,
        count,
        training.sketchbook_size,
        workers=workers,
        should_stop=should_stop,
        progress=(lambda d, t: progress("drawing unseen faces", d, t)) if progress else None,
    )
    if training.sketchbook_size != res:
        images = np.stack([np.asarray(Image.fromarray(a).resize((res, res), Image.Resampling.LANCZOS)) for a in images])
    source = f"{len(images)} sketchbook faces, seed {seed}, {training.sketchbook_size} px"
    if drift:
        source += (
            f"; WARNING: the sketchbook renderer changed since the training folder was drawn "
            f"({drift}), so unseen faces differ from training faces by more than chance"
        )
    return images, source


def renderer_drift(training: TrainingFaces, samples: int = 4) -> str:
    """ "" when today's sketchbook redraws the first training faces pixel for pixel, else what differs.

    Unseen faces are only a fair yardstick when drawn by the same renderer as the
    training faces.
    """
    from mangagan_app.core.sketchbook.dataset import sketchbook_face

    rows = [r for r in range(len(training.names)) if training.sketchbook_indices[r] >= 0][:samples]
    changed = 0
    for row in rows:
        try:
            with Image.open(training.folder / training.names[row]) as im:
                on_disk = np.asarray(im.convert("RGB"))
        except OSError:
            continue
        redrawn = np.asarray(
            sketchbook_face(training.sketchbook_seed, int(training.sketchbook_indices[row]), training.sketchbook_size)[
                1
            ].convert("RGB")
        )
        changed += int(not np.array_equal(on_disk, redrawn))
    return f"{changed} of {len(rows)} training faces redraw differently" if changed else ""


# ---- the index --------------------------------------------------------------------------------------
@dataclass
class FeatureIndex:
    """Training faces in a compact feature space, with names and the verdict calibration.

    ``features`` (N, dims) float16 are tagger features minus ``mean`` projected on
    ``axes`` (dims, feature_dim).
    """

    features: np.ndarray
    names: np.ndarray
    mean: np.ndarray
    axes: np.ndarray
    calibration: Calibration
    data_dir: str
    tagger_sha256: str
    resolution: int
    sketchbook_seed: int = -1
    sketchbook_size: int = 0
    sketchbook_indices: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.features)

    def project(self, features: np.ndarray) -> np.ndarray:
        """Tagger features (M, feature_dim) → index space (M, dims) float32."""
        return ((np.asarray(features, np.float32) - self.mean) @ self.axes.T).astype(np.float32)


def principal_axes(features: np.ndarray, dims: int = INDEX_DIMS) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and the ``dims`` leading principal axes (dims, D) of ``features`` (N, D)."""
    x = np.asarray(features, np.float64)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean.astype(np.float32), vt[: min(dims, vt.shape[0])].astype(np.float32)


def build_index(
    training: TrainingFaces,
    train_features: np.ndarray,
    unseen: np.ndarray,
    tagger: AttributeTagger,
    *,
    dims: int = INDEX_DIMS,
) -> FeatureIndex:
    """The index of ``training`` from its tagger features, calibrated with ``unseen`` real faces
    ((N, H, W, 3) uint8, compared either way round like queries are)."""
    mean, axes = principal_axes(train_features, dims)
    projected = ((train_features - mean) @ axes.T).astype(np.float16)
    reference = projected.astype(np.float32)
    unseen_nearest, _ = nearest_either_way(
        ((tagger.features(unseen) - mean) @ axes.T).astype(np.float32),
        ((tagger.features(mirrored(unseen)) - mean) @ axes.T).astype(np.float32),
        reference,
    )
    return FeatureIndex(
        features=projected,
        names=np.array(training.names),
        mean=mean,
        axes=axes,
        calibration=Calibration.from_distances(unseen_nearest),
        data_dir=str(training.folder),
        tagger_sha256=tagger.sha256,
        resolution=training.faces.resolution,
        sketchbook_seed=-1 if training.sketchbook_seed is None else training.sketchbook_seed,
        sketchbook_size=training.sketchbook_size or 0,
        sketchbook_indices=training.sketchbook_indices,
    )


def index_training_set(
    folder: str | Path,
    tagger: AttributeTagger,
    *,
    resolution: int,
    unseen_dir: str | Path | None = None,
    unseen_count: int = 1000,
    workers: int = 2,
    progress: StageProgress | None = None,
    should_stop: StopFn | None = None,
) -> FeatureIndex | None:
    """Build the index of a training folder from scratch (load, tag, draw unseen faces, calibrate).

    ``progress(stage, done, total)``; returns ``None`` when ``should_stop()`` turned
    true. Raises what :func:`load_training_faces` and :func:`unseen_real_faces` raise.
    """
    training = load_training_faces(folder, resolution, progress=progress)
    if should_stop and should_stop():
        return None
    train_features = tag_in_chunks(tagger, training.faces.images, "tagging training faces", progress, should_stop)
    if train_features is None:
        return None
    unseen, _ = unseen_real_faces(
        training, unseen_count, unseen_dir=unseen_dir, workers=workers, progress=progress, should_stop=should_stop
    )
    if should_stop and should_stop():
        return None
    return build_index(training, train_features, unseen, tagger)


def tag_in_chunks(
    tagger: AttributeTagger,
    images: np.ndarray | torch.Tensor,
    stage: str,
    progress: StageProgress | None,
    should_stop: StopFn | None,
    chunk: int = 1024,
) -> np.ndarray | None:
    """Tagger features of many faces with progress; ``None`` when stopped."""
    out = []
    for i in range(0, len(images), chunk):
        if should_stop and should_stop():
            return None
        out.append(tagger.features(images[i : i + chunk]))
        if progress:
            progress(stage, min(i + chunk, len(images)), len(images))
    return np.concatenate(out) if out else np.zeros((0, tagger.feature_dim), np.float32)


def index_path(weights: str | Path) -> Path:
    """Where the index of a model lives: ``NAME.index.npz`` beside ``NAME.safetensors``."""
    st_path, _ = weights_files(weights)
    return st_path.with_name(st_path.stem + ".index.npz")


def save_index(index: FeatureIndex, path: str | Path) -> Path:
    """Write ``index`` to ``path`` (.npz, compressed) atomically."""
    meta = {
        "format": INDEX_FORMAT,
        "data_dir": index.data_dir,
        "tagger_sha256": index.tagger_sha256,
        "resolution": index.resolution,
        "sketchbook_seed": index.sketchbook_seed,
        "sketchbook_size": index.sketchbook_size,
        "calibration": {
            "near_copy": index.calibration.near_copy,
            "close": index.calibration.close,
            "unseen_faces": index.calibration.unseen_faces,
        },
    }
    indices = index.sketchbook_indices if index.sketchbook_indices is not None else np.full(len(index), -1)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        features=index.features,
        names=index.names.astype(str),
        mean=index.mean,
        axes=index.axes,
        sketchbook_indices=indices.astype(np.int32),
        meta=np.array(json.dumps(meta)),
    )
    return atomic_write_bytes(path, buf.getvalue())


def load_index(path: str | Path, tagger: AttributeTagger | None = None) -> FeatureIndex:
    """The index at ``path``. Raises :class:`FeatureIndexError` naming the file when it is missing,
    unreadable, or was built with a different tagger than ``tagger``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in ("features", "names", "mean", "axes", "sketchbook_indices")}
    except FileNotFoundError:
        raise FeatureIndexError(path, "no feature index here") from None
    except (OSError, ValueError, KeyError) as exc:
        raise FeatureIndexError(path, f"unreadable feature index: {exc}") from None
    if meta.get("format") != INDEX_FORMAT:
        raise FeatureIndexError(path, f"not a {INDEX_FORMAT} file")
    if tagger is not None and meta.get("tagger_sha256") != tagger.sha256:
        raise FeatureIndexError(path, "built with another tagger; rebuild it (mangagan evaluate --write-index)")
    cal = meta["calibration"]
    return FeatureIndex(
        features=arrays["features"],
        names=arrays["names"],
        mean=arrays["mean"],
        axes=arrays["axes"],
        calibration=Calibration(float(cal["near_copy"]), float(cal["close"]), int(cal["unseen_faces"])),
        data_dir=meta["data_dir"],
        tagger_sha256=meta["tagger_sha256"],
        resolution=int(meta["resolution"]),
        sketchbook_seed=int(meta["sketchbook_seed"]),
        sketchbook_size=int(meta["sketchbook_size"]),
        sketchbook_indices=arrays["sketchbook_indices"],
    )


# ---- queries -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Match:
    """One training face near the query: its row in the index, file name and distance."""

    row: int
    name: str
    distance: float


@dataclass(frozen=True)
class OriginalityResult:
    verdict: str
    distance: float
    matches: list[Match]
    calibration: Calibration

    def explanation(self) -> str:
        """One plain sentence saying what the verdict means."""
        cal = self.calibration
        if self.verdict == VERDICTS[2]:
            return (
                f"Closer to a training face ({self.distance:.2f}) than 99 % of unseen real faces come "
                f"(below {cal.near_copy:.2f}): this face may copy its training data."
            )
        if self.verdict == VERDICTS[1]:
            return (
                f"Closer to a training face ({self.distance:.2f}) than 95 % of unseen real faces come "
                f"(below {cal.close:.2f}), but not a near copy."
            )
        return (
            f"No training face is nearer ({self.distance:.2f}) than is usual for a new face "
            f"(95 % of unseen real faces are at {cal.close:.2f} or more)."
        )


def find_closest(
    index: FeatureIndex, query: np.ndarray | Image.Image, k: int = 5, tagger: AttributeTagger | None = None
) -> OriginalityResult:
    """The ``k`` training faces nearest ``query`` and the verdict for the nearest one.

    ``query`` is a face (PIL image or (H, W, 3) uint8, needs ``tagger``; compared
    in mirror image too) or tagger features (feature_dim,) float. Raises ``ValueError`` when a face is given
    without a tagger or the features do not fit the index.
    """
    if isinstance(query, Image.Image):
        query = np.asarray(query.convert("RGB"), np.uint8)
    query = np.asarray(query)
    if query.dtype == np.uint8:
        if tagger is None:
            raise ValueError("a tagger is needed to compare a face image")
        features = tagger.features(np.stack([query, query[:, ::-1]]))  # the face and its mirror image
    else:
        features = query.reshape(1, -1).astype(np.float32)
    if features.shape[1] != index.mean.shape[0]:
        raise ValueError(f"features of size {features.shape[1]} do not fit an index of size {index.mean.shape[0]}")
    dists, rows = nearest(index.project(features), index.features.astype(np.float32), k=k)
    best: dict[int, float] = {}
    for r, d in zip(rows.ravel(), dists.ravel(), strict=True):
        best[int(r)] = min(float(d), best.get(int(r), float("inf")))
    ranked = sorted(best.items(), key=lambda item: item[1])[:k]
    matches = [Match(r, str(index.names[r]), d) for r, d in ranked]
    return OriginalityResult(
        index.calibration.verdict(matches[0].distance), matches[0].distance, matches, index.calibration
    )


def training_face(index: FeatureIndex, row: int) -> Image.Image | None:
    """The training face at ``row``: its file if still there, else redrawn from its sketchbook seed
    and index; ``None`` when neither is possible."""
    path = Path(index.data_dir) / str(index.names[row])
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError):
        pass
    sb_index = int(index.sketchbook_indices[row]) if index.sketchbook_indices is not None else -1
    if index.sketchbook_seed < 0 or sb_index < 0:
        return None
    from mangagan_app.core.sketchbook.dataset import sketchbook_face

    return sketchbook_face(index.sketchbook_seed, sb_index, index.sketchbook_size or index.resolution)[1]


def ensure_index(
    weights: str | Path,
    card: dict,
    tagger: AttributeTagger,
    *,
    cache_dir: str | Path | None = None,
    progress: StageProgress | None = None,
    should_stop: StopFn | None = None,
) -> FeatureIndex | None:
    """The feature index of the model at ``weights``: the shipped ``NAME.index.npz``, else one
    cached in ``cache_dir`` under the model's sha256, else built now from the training
    folder named in the model card (and cached). ``None`` when stopped.

    Raises :class:`FeatureIndexError` when there is no usable index and the training
    folder is not on this computer.
    """
    shipped = index_path(weights)
    try:
        return load_index(shipped, tagger)
    except FeatureIndexError as exc:
        if shipped.exists():
            log.warning("%s", exc)
    cached = Path(cache_dir) / f"index-{str(card.get('sha256', 'unknown'))[:16]}.npz" if cache_dir else None
    if cached is not None and cached.is_file():
        try:
            return load_index(cached, tagger)
        except FeatureIndexError as exc:
            log.warning("rebuilding: %s", exc)
    training = card.get("training", {})
    folder = training.get("data", {}).get("source") or training.get("config", {}).get("data")
    if not folder or not Path(folder).is_dir():
        raise FeatureIndexError(
            shipped,
            "no feature index beside the model, and its training folder "
            f"{folder or '(not recorded)'} is not on this computer to build one "
            "(mangagan evaluate WEIGHTS --data FOLDER --write-index makes it)",
        )
    resolution = int(card.get("architecture", {}).get("resolution", 64))
    index = index_training_set(folder, tagger, resolution=resolution, progress=progress, should_stop=should_stop)
    if index is not None and cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        save_index(index, cached)
    return index


def check_originality(
    pixels: np.ndarray,
    weights: Path,
    card: dict,
    *,
    cache_dir: Path | None = None,
    tagger_path: Path | None = None,
    k: int = 5,
    progress: Callable[[str, int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[OriginalityResult, list[np.ndarray | None]]:
    """The ``k`` training faces closest to ``pixels`` ((H, W, 3) uint8) for the model at ``weights``:
    the result and one (H, W, 3) uint8 thumbnail (or None) per match.

    Builds the model's index first if need be (``progress(stage, done, total)``); raises
    ``InterruptedError`` when ``should_stop()`` ends that build.
    """
    tagger = load_tagger(tagger_path)
    index = ensure_index(weights, card, tagger, cache_dir=cache_dir, progress=progress, should_stop=should_stop)
    if index is None:
        raise InterruptedError("Stopped before the training set was indexed.")
    result = find_closest(index, pixels, k, tagger)
    thumbs = []
    for match in result.matches:
        face = training_face(index, match.row)
        thumbs.append(None if face is None else np.asarray(face.convert("RGB"), np.uint8))
    return result, thumbs
