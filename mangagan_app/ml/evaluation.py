"""How good is a generator? Attribute adherence, fidelity, originality and detectability.

:func:`evaluate` measures a shipped generator (``NAME.safetensors`` + card) against
its training folder (a sketchbook, or any faces with kohya tag sidecars) with the
independent tagger (:mod:`mangagan_app.ml.tagger`):

* **attributes** — for every value of the groups the tagger knows and the training
  labels tag (values no training face is labelled with are left out), ``per_value``
  faces are drawn asking for it (the other attributes taken from training labels)
  and the share the tagger reads as asked is reported, beside the tagger's reading
  of real faces with that label (its ceiling: unseen faces when their folder is
  tagged, else training faces); free tags also report the share of faces drawn
  *without* the tag that are read without it.
* **fidelity** — in the tagger's feature space, the Fréchet distance and the k-NN
  precision / recall / density / coverage (:mod:`mangagan_app.ml.metrics`) of
  generated faces against real faces, each beside its floor: the same metric
  between two disjoint halves of real faces, as many faces a side. (Inception
  weights cannot be downloaded here, so this is not FID and its numbers do not
  compare with published FIDs.)
* **originality** — each generated face's nearest training face in pixels (RMS
  per channel in [0, 1]) and in tagger features, against the same for unseen real
  faces; the memorisation rate is the share of generated faces nearer a training
  face than 99 % of unseen real faces are. Unseen faces are drawn from the
  sketchbook for a sketchbook folder; any other folder needs a folder of them.
* **detectability** — for sketchbook data only, the share of generated faces
  animeface finds a face in, over the share for real training faces, both enlarged
  2× bicubic below 128 px (the detector misses most 64-px faces) and as they are from
  128 px on. A weak signal (the detector passes faces without eyes); never read
  alone.

Goals (issue 8) are in :data:`GOALS`. :func:`format_report` gives the table the CLI
prints; :func:`write_card_metrics` stores a summary in the model card.

:func:`evaluate_images` measures plain arrays of faces (generated, unseen real,
training) for a benchmark, and :func:`load_faces_array` loads a folder as such an array.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mangagan_app.core.attributes import Vocabulary
from mangagan_app.core.files import atomic_write_bytes
from mangagan_app.core.reference_faces import detection_flags
from mangagan_app.ml.checkpoint import card_vocabulary, load_generator, training_steps, update_card
from mangagan_app.ml.dataset import FaceSet, faces_from_items, folder_items
from mangagan_app.ml.metrics import K_NEAREST, compute_metrics, memorisation, near_copy_threshold
from mangagan_app.ml.originality import (
    FeatureIndex,
    build_index,
    load_training_faces,
    mirrored,
    nearest_either_way,
    pixel_rms,
    pixels_for_comparison,
    tag_in_chunks,
    unseen_real_faces,
)
from mangagan_app.ml.sampling import image_grid, noise, relayout, to_uint8
from mangagan_app.ml.tagger import (
    AttributeTagger,
    accuracy_report,
    decide,
    known_groups,
    labelled_rows,
    load_tagger,
    scores_from_logits,
)

log = logging.getLogger(__name__)

GOALS = {
    "hair_colour": 0.95,
    "eye_colour": 0.90,
    "hair_style": 0.90,
    "tags": 0.90,
    "memorisation_max": 0.01,
    "detectability": 0.95,
}
# Free tags the sketchbook never draws together: asking for one drops the other, so the
# faces asked for stay within what the model was trained on.
EXCLUSIVE_TAG_PAIRS = (("looking_up", "looking_down"), ("hat", "cat_ears"))

StageProgress = Callable[[str, int, int], None]
StopFn = Callable[[], bool]


class EvaluationStopped(Exception):
    """Raised when ``should_stop()`` turned true during :func:`evaluate`."""


@dataclass(frozen=True)
class EvaluationSettings:
    """``n`` generated faces for fidelity and originality (and as many real faces per
    half), ``per_value`` faces per attribute value, ``detect`` faces of each kind
    for the detector, ``unseen`` unseen real faces; ``seed`` fixes every draw.
    ``threads`` > 0 caps torch's CPU threads while evaluating (on a CPU shared with
    training runs one thread is much faster than two fighting); 0 leaves them."""

    n: int = 2000
    per_value: int = 100
    detect: int = 500
    unseen: int = 2000
    seed: int = 0
    workers: int = 2
    batch: int = 250
    threads: int = 0

    def __post_init__(self) -> None:
        if min(self.n, self.per_value, self.detect, self.unseen, self.batch) < 1 or self.workers < 1:
            raise ValueError("n, per_value, detect, unseen, batch and workers must all be at least 1")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0 = leave torch's setting), not {self.threads}")


# ---- pieces ----------------------------------------------------------------------------------------
PRDC = ("precision", "recall", "density", "coverage")


def _floor_key(name: str) -> str:
    return "frechet_floor" if name == "frechet" else f"floor_{name}"


def feature_metrics(generated: np.ndarray, real_a: np.ndarray, real_b: np.ndarray) -> dict[str, float]:
    """Every metric of :data:`~mangagan_app.ml.metrics.METRICS` on tagger features.

    ``generated`` against real half ``real_a`` under the metric's name, and real half
    ``real_b`` against ``real_a`` — the floor, what a generator drawing exactly like
    the real faces would score with as many faces — under ``floor_<name>``
    (``frechet_floor`` for the Fréchet distance). Give all three sets the same size:
    k-NN metrics and the Fréchet estimate both move with it. Raises ``ValueError``
    when a set is too small for a metric.
    """
    out = compute_metrics(real_a, generated)
    out.update({_floor_key(name): value for name, value in compute_metrics(real_a, real_b).items()})
    return out


def attribute_requests(
    pool: torch.Tensor, per_value: int, vocabulary: Vocabulary, seed: int
) -> list[tuple[str, str, torch.Tensor]]:
    """For every attribute value: (group, tag, conditions (per_value, dim)) asking for it.

    The other attributes come from rows of ``pool`` (complete training labels).
    """
    gen = torch.Generator().manual_seed(seed)
    requests = []
    start = 0
    for group in vocabulary.groups:
        s = slice(start, start + len(group.values))
        for j, value in enumerate(group.values):
            cond = pool[torch.randint(len(pool), (per_value,), generator=gen)].clone()
            if group.exclusive:
                cond[:, s] = 0.0
            else:
                for pair in EXCLUSIVE_TAG_PAIRS:
                    if value in pair:
                        other = pair[1 - pair.index(value)]
                        if other in group.values:
                            cond[:, start + group.values.index(other)] = 0.0
            cond[:, start + j] = 1.0
            requests.append((group.name, group.tag(value), cond))
        start += len(group.values)
    return requests


@torch.no_grad()
def render(generator: torch.nn.Module, cond: torch.Tensor, seed: int, batch: int) -> np.ndarray:
    """Faces (N, H, W, 3) uint8 for conditions ``cond`` (N, dim), noise from ``seed``, no truncation."""
    z = noise(len(cond), generator.arch.z_dim, seed)
    out = [to_uint8(generator(z[i : i + batch], cond[i : i + batch])) for i in range(0, len(cond), batch)]
    return np.concatenate(out)


def _summary(values: np.ndarray) -> dict:
    v = np.asarray(values, np.float64)
    return {"median": float(np.median(v)), "p01": float(np.quantile(v, 0.01)), "min": float(v.min())}


def originality_report(
    generated: np.ndarray,
    unseen: np.ndarray,
    train_images: np.ndarray,
    train_features: np.ndarray,
    names: list[str],
    tagger: AttributeTagger,
    *,
    progress: StageProgress | None = None,
) -> dict:
    """Nearest training faces of generated and of unseen real faces, and the memorisation rates.

    Images are uint8 (N, H, W, 3) at one size; ``train_features`` come from
    ``tagger``. Each face is compared as it is and in mirror image (the trainer
    mirrors), the nearer counting. A generated face counts as memorised in a space
    when it is nearer a training face than 99 % of unseen real faces are;
    ``memorisation_rate`` needs both spaces.
    """

    def step(done: int) -> None:
        if progress:
            progress("nearest training faces", done, 4)

    step(0)
    train_small = pixels_for_comparison(train_images)
    both = pixels_for_comparison(np.concatenate([generated, unseen]))
    both_pix, both_pix_rows = nearest_either_way(both, both[:, :, ::-1], train_small)
    del train_small
    m = len(generated)
    gen_pix, gen_pix_rows, unseen_pix = both_pix[:m], both_pix_rows[:m], both_pix[m:]
    step(2)
    gen_feat, gen_feat_rows = nearest_either_way(
        tagger.features(generated), tagger.features(mirrored(generated)), train_features
    )
    unseen_feat, _ = nearest_either_way(tagger.features(unseen), tagger.features(mirrored(unseen)), train_features)
    step(3)
    shape = both.shape[1:]
    gen_pix, unseen_pix = pixel_rms(gen_pix, shape), pixel_rms(unseen_pix, shape)
    closest = np.argsort(gen_pix)[:8]
    step(4)
    return {
        "pixels": {
            "space": f"RMS difference per channel value in [0, 1], at {shape[0]} px (block averages)",
            "generated": _summary(gen_pix),
            "unseen_real": _summary(unseen_pix),
            "threshold": near_copy_threshold(unseen_pix),
            "memorisation_rate": memorisation([gen_pix], [unseen_pix]),
        },
        "features": {
            "generated": _summary(gen_feat),
            "unseen_real": _summary(unseen_feat),
            "threshold": near_copy_threshold(unseen_feat),
            "memorisation_rate": memorisation([gen_feat], [unseen_feat]),
        },
        "memorisation_rate": memorisation([gen_pix, gen_feat], [unseen_pix, unseen_feat]),
        "memorisation_rule": "generated faces nearer a training face (as drawn or mirrored) than 99 % of unseen "
        "real faces are, in pixels and in tagger features both",
        "closest_pairs": [
            {
                "generated": int(i),
                "training_file": names[int(gen_pix_rows[i])],
                "pixel_distance": float(gen_pix[i]),
                "feature_nearest_file": names[int(gen_feat_rows[i])],
            }
            for i in closest
        ],
    }


# ---- the evaluation ------------------------------------------------------------------------------------
def evaluate(
    weights: str | Path,
    data: str | Path,
    *,
    settings: EvaluationSettings = EvaluationSettings(),
    tagger: AttributeTagger | None = None,
    unseen_dir: str | Path | None = None,
    pairs_png: str | Path | None = None,
    progress: StageProgress | None = None,
    should_stop: StopFn | None = None,
) -> tuple[dict, FeatureIndex]:
    """Measure the generator at ``weights`` against its training folder ``data``.

    Returns the report (JSON-able, see the module docstring; keys ``model``,
    ``settings``, ``tagger``, ``attributes``, ``fidelity``, ``originality``,
    ``detectability`` — ``None`` unless ``data`` is a sketchbook —, ``goals``,
    ``seconds``) and the feature index of the training set it built on the way.
    Attributes are measured for the groups the tagger knows and the training labels
    tag. ``unseen_dir`` (unseen real faces, e.g. the measuring part of a real set)
    is needed when ``data`` is not a sketchbook. With ``pairs_png``, a sheet of the 8
    generated faces nearest the training set in pixels, each beside its nearest
    training face, is written there (look at it: the numbers alone do not show a
    copy). ``progress(stage, done, total)``. Raises
    :class:`~mangagan_app.ml.checkpoint.WeightsError` /
    :class:`~mangagan_app.ml.tagger.TaggerError` for unusable files,
    ``FileNotFoundError``/``ValueError`` for an unusable data folder (or a folder
    that is not a sketchbook without ``unseen_dir``) and :class:`EvaluationStopped`
    when stopped.
    """
    previous_threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        return _evaluate(weights, data, settings, tagger, unseen_dir, pairs_png, progress, should_stop)
    finally:
        torch.set_num_threads(previous_threads)


def _evaluate(
    weights: str | Path,
    data: str | Path,
    settings: EvaluationSettings,
    tagger: AttributeTagger | None,
    unseen_dir: str | Path | None,
    pairs_png: str | Path | None,
    progress: StageProgress | None,
    should_stop: StopFn | None,
) -> tuple[dict, FeatureIndex]:
    started = time.monotonic()

    def report(stage: str, done: int, total: int) -> None:
        if progress:
            progress(stage, done, total)

    def check_stop() -> None:
        if should_stop and should_stop():
            raise EvaluationStopped("evaluation stopped")

    torch.manual_seed(settings.seed)
    generator, card = load_generator(weights)
    tagger = tagger or load_tagger()
    # Faces are asked for and read in the tagger's vocabulary; a model's own tags stay off.
    vocabulary = tagger.vocabulary
    model_vocabulary = card_vocabulary(card, weights)

    def draw(cond: torch.Tensor, seed: int) -> np.ndarray:
        return render(generator, relayout(cond, vocabulary, model_vocabulary), seed, settings.batch)

    training = load_training_faces(data, generator.arch.resolution, progress=report)
    sketchbook = training.sketchbook_seed is not None
    if not sketchbook and unseen_dir is None:
        raise ValueError(
            f"{training.folder}: not a sketchbook folder, so no unseen faces can be drawn for the "
            "memorisation yardstick: pass a folder of unseen real faces (--unseen-dir)"
        )
    check_stop()
    faces = training.faces
    groups = [g for g in known_groups(faces.cond, faces.mask, vocabulary) if g in tagger.known_groups]
    train_features = tag_in_chunks(tagger, faces.images, "tagging training faces", report, should_stop)
    if train_features is None:
        raise EvaluationStopped("evaluation stopped")
    pool = faces.sample_conditions(max(settings.n, 4096), torch.Generator().manual_seed(settings.seed))

    # Attributes: per value, faces asked for it, read back by the tagger. Only values some training
    # face is labelled with: a model cannot be asked for what its data never showed (silver hair
    # in a real set whose tags never say it).
    shown = set(np.asarray(vocabulary.slot_names())[((faces.cond * faces.mask).amax(dim=0) > 0).numpy()])
    requests = [
        r
        for r in attribute_requests(pool, settings.per_value, vocabulary, settings.seed + 1)
        if r[0] in groups and r[1] in shown
    ]
    values: dict[str, dict] = {}
    per_group: dict[str, list[float]] = {}
    for k, (group, tag, cond) in enumerate(requests):
        check_stop()
        images = draw(cond, settings.seed + 100 + k)
        read = decide(tagger.read(images)[1], vocabulary)
        slot = vocabulary.slot_names().index(tag)
        share = float(read[:, slot].mean())
        values[tag] = {"group": group, "asked": len(cond), "read_as_asked": share}
        per_group.setdefault(group, []).append(share)
        report("attributes", k + 1, len(requests))

    # The main generated set: conditions drawn like the training labels.
    check_stop()
    cond = pool[: settings.n]
    generated = draw(cond, settings.seed + 7)
    gen_features, gen_scores = tagger.read(generated)
    gen_read = decide(gen_scores, vocabulary)
    start = 0
    for group in vocabulary.groups:
        if not group.exclusive and group.name in groups:
            for j, value in enumerate(group.values):
                slot, absent = start + j, cond[:, start + j].numpy() < 0.5
                if absent.any():
                    share = float(1.0 - gen_read[absent, slot].mean())
                    values[group.tag(value)]["absent_read_as_absent"] = share
                    values[group.tag(value)]["absent_asked"] = int(absent.sum())
        start += len(group.values)
    report("generating", 1, 1)

    # Fidelity: Fréchet distance and k-NN manifolds in tagger features, each with its real-vs-real floor.
    rng = np.random.default_rng(settings.seed)
    half = min(settings.n, len(faces) // 2)
    order = rng.permutation(len(faces))
    real_a, real_b = order[:half], order[half : 2 * half]
    measured = feature_metrics(gen_features[:half], train_features[real_a], train_features[real_b])
    fidelity = {
        "space": f"tagger features ({tagger.feature_dim}-d)",
        "note": "Inception weights cannot be downloaded here: Fréchet distance in the independent tagger's "
        "feature space, not FID; compare only with the real-vs-real floor",
        "generated_vs_real": measured["frechet"],
        "real_vs_real_floor": measured["frechet_floor"],
        "faces_per_side": int(min(half, len(generated))),
        "prdc": {
            "k": K_NEAREST,
            "generated_vs_real": {m: measured[m] for m in PRDC},
            "real_vs_real_floor": {m: measured[_floor_key(m)] for m in PRDC},
        },
    }
    check_stop()

    # Originality: nearest training face of generated and of unseen real faces.
    if unseen_dir is not None:  # kept with its labels: the tagger's ceiling on faces nobody trained on
        unseen_set = first_faces(unseen_dir, generator.arch.resolution, settings.unseen)
        unseen = unseen_set.images.permute(0, 2, 3, 1).numpy()
        unseen_source = f"{len(unseen_set)} faces from {unseen_dir}"
    else:
        unseen_set = None
        unseen, unseen_source = unseen_real_faces(
            training, settings.unseen, workers=settings.workers, progress=report, should_stop=should_stop
        )
    check_stop()
    originality = originality_report(
        generated,
        unseen,
        faces.images.permute(0, 2, 3, 1).numpy(),
        train_features,
        training.names,
        tagger,
        progress=report,
    )
    originality["unseen_source"] = unseen_source
    if pairs_png is not None:
        rows = {name: row for row, name in enumerate(training.names)}
        pairs = [
            (generated[p["generated"]], faces.images[rows[p["training_file"]]].permute(1, 2, 0).numpy())
            for p in originality["closest_pairs"]
        ]
        buf = io.BytesIO()
        Image.fromarray(image_grid(np.stack([face for pair in pairs for face in pair]), columns=8)).save(buf, "PNG")
        atomic_write_bytes(pairs_png, buf.getvalue())
    index = build_index(training, train_features, unseen, tagger)

    # Detectability: animeface on generated and on real training faces, both at 2x (calibrated on sketchbook).
    check_stop()
    detectability = _detectability(generated, faces, order, settings, report, should_stop) if sketchbook else None
    check_stop()

    # The tagger's own reading of real faces: the ceiling for each generated share. Unseen faces
    # when their folder tags them, since a tagger trained on the same real data as the model
    # reads its own training faces too well; else training faces (sketchbook taggers never saw them).
    labelled = order[np.isin(order, labelled_rows(faces.mask, groups, vocabulary).numpy())]
    on_training = _tagger_on_training(tagger, train_features, faces, labelled[: max(settings.n, 2000)], groups)
    on_unseen = None
    if unseen_set is not None and len(labelled_rows(unseen_set.mask, groups, vocabulary)):
        on_unseen = accuracy_report(
            tagger.read(unseen)[1], unseen_set.cond.numpy(), vocabulary, mask=unseen_set.mask.numpy(), groups=groups
        )
    on_real = on_unseen or on_training
    for tag, v in values.items():
        v["real_read_as_labelled"] = on_real["values"].get(tag)
        if "absent_read_as_absent" in v:
            v["real_absent_read_as_absent"] = on_real["values"].get(tag + ":absent")
    group_shares = {
        g: {
            "mean": float(np.mean(v)),
            "worst": float(np.min(v)),
            "values_below_goal": sum(1 for x in v if x < GOALS.get(g, 0.9)),
        }
        for g, v in per_group.items()
    }
    result = {
        "model": {
            "weights": str(weights),
            "name": Path(weights).stem,
            "sha256": card.get("sha256"),
            "resolution": generator.arch.resolution,
            "training_steps": training_steps(card),
        },
        "data": {"folder": str(training.folder), "faces": len(faces), "sketchbook": sketchbook},
        "settings": asdict(settings),
        "tagger": {
            "sha256": tagger.sha256,
            "accuracy_unseen": tagger.card.get("accuracy_unseen", {}).get("groups"),
            "test_kind": tagger.card.get("training", {}).get("test_kind", "sketchbook"),
            "known_groups": list(tagger.known_groups),
            "measured_groups": groups,
            "unmeasured_groups": [g.name for g in vocabulary.groups if g.name not in groups],
            "accuracy_training_faces": on_training["groups"],
            "accuracy_unseen_real_faces": on_unseen["groups"] if on_unseen else None,
            "ceiling_faces": "unseen faces" if on_unseen else "training faces",
        },
        "attributes": {"groups": group_shares, "values": values},
        "fidelity": fidelity,
        "originality": originality,
        "detectability": detectability,
        "goals": GOALS,
        "seconds": round(time.monotonic() - started, 1),
    }
    return result, index


# The face size from which detectability is measured on the faces as drawn, without enlarging.
DETECT_AS_DRAWN_PX = 128


def _detectability(
    generated: np.ndarray,
    faces,
    order: np.ndarray,
    settings: EvaluationSettings,
    report: StageProgress,
    should_stop: StopFn | None,
) -> dict:
    """The share of generated and of real training faces (rows ``order``) animeface finds, at 2×
    below :data:`DETECT_AS_DRAWN_PX` and as drawn from there on."""
    scale = 1 if generated.shape[1] >= DETECT_AS_DRAWN_PX else 2
    n_det = min(settings.detect, len(generated), len(faces))
    real_det = faces.images[torch.from_numpy(order[:n_det])].permute(0, 2, 3, 1).numpy()
    both = np.concatenate([generated[:n_det], real_det])
    flags = detection_flags(
        both,
        scale=scale,
        workers=settings.workers,
        should_stop=should_stop,
        progress=lambda d, t: report("face detector", d, t),
    )
    gen_rate, real_rate = float(flags[:n_det].mean()), float(flags[n_det:].mean())
    return {
        "generated_found": gen_rate,
        "real_found": real_rate,
        "ratio": gen_rate / real_rate if real_rate > 0 else float("nan"),
        "faces_each": n_det,
        "upscale": "2x bicubic" if scale == 2 else "none",
    }


def _tagger_on_training(
    tagger: AttributeTagger, features: np.ndarray, faces, rows: np.ndarray, groups: list[str]
) -> dict:
    """The tagger's :func:`~mangagan_app.ml.tagger.accuracy_report` of ``groups`` on (a sample of)
    the training faces: the ceiling the generated faces' attribute shares can reach."""
    with torch.no_grad():
        logits = tagger.net.head(torch.from_numpy(features[rows]))
    scores = scores_from_logits(logits, tagger.vocabulary).numpy()
    picked = torch.from_numpy(rows)
    return accuracy_report(
        scores, faces.cond[picked].numpy(), tagger.vocabulary, mask=faces.mask[picked].numpy(), groups=groups
    )


# ---- plain arrays (benchmarks) ------------------------------------------------------------------------
def first_faces(folder: str | Path, resolution: int, limit: int | None = None) -> FaceSet:
    """The faces of ``folder`` (sorted by name; the first ``limit`` when given) at ``resolution``
    px, centre-cropped and resized with Lanczos, with the labels of their tag sidecars.

    Unreadable images are logged and skipped. Raises ``FileNotFoundError``/
    ``NotADirectoryError`` for a missing folder and ``ValueError`` when it holds no
    usable image.
    """
    return faces_from_items(folder_items(folder)[:limit], resolution, source=str(folder))


def load_faces_array(folder: str | Path, resolution: int, limit: int | None = None) -> np.ndarray:
    """The images of :func:`first_faces` as uint8 (N, resolution, resolution, 3) (their labels:
    ``first_faces(...).cond`` / ``.mask``). Raises what :func:`first_faces` raises."""
    return first_faces(folder, resolution, limit).images.permute(0, 2, 3, 1).numpy()


def _check_faces(name: str, images: np.ndarray) -> None:
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 4
        or images.shape[-1] != 3
        or len(images) == 0
    ):
        shape = getattr(images, "shape", None)
        raise ValueError(
            f"{name}: need uint8 faces (N, H, W, 3), N ≥ 1, got {shape} "
            f"{getattr(images, 'dtype', type(images).__name__)}"
        )


def _at_size(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 faces (N, H, W, 3) resized (Lanczos) to ``height`` × ``width``; the same array when they are."""
    if images.shape[1:3] == (height, width):
        return images
    return np.stack([np.asarray(Image.fromarray(a).resize((width, height), Image.Resampling.LANCZOS)) for a in images])


def _known_exclusive_mask(cond: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
    """(N, dim) 1 over each exclusive group a condition row gives a value for, 0 elsewhere."""
    mask = np.zeros(cond.shape, np.float32)
    for group in vocabulary.exclusive_groups:
        s = slice(vocabulary.offset(group.name), vocabulary.offset(group.name) + len(group.values))
        mask[:, s] = cond[:, s].sum(axis=1, keepdims=True) > 0.5
    return mask


def evaluate_images(
    generated: np.ndarray,
    *,
    real: np.ndarray,
    training: np.ndarray,
    tagger: AttributeTagger,
    asked: np.ndarray | None = None,
    seed: int = 0,
    real_cond: np.ndarray | None = None,
    real_mask: np.ndarray | None = None,
) -> dict:
    """Measure generated faces against real ones, all given as plain arrays (what benchmarks call).

    ``generated``, ``real`` (unseen real faces: never trained on, e.g. the measuring
    part of a data set) and ``training`` (the faces the model was trained on) are uint8
    (N, H, W, 3) at any resolution: real and training faces are first resized (Lanczos)
    to the generated faces' size, as a training folder is loaded at the model's size;
    the tagger then reads every face at its own size. ``asked`` (len(generated), dim)
    are the condition vectors the faces were drawn for (``None`` for an unconditional
    model); ``real_cond`` / ``real_mask`` (len(real), dim) the labels of the real faces
    and where they are known (``load_face_folder(...).cond`` / ``.mask``; mask default
    all ones), to measure the tagger's ceiling. ``seed`` fixes the halving of the real
    faces and the generated faces picked to match a half. The same arrays and seed give
    the same numbers.

    Returns a flat dict:

    * ``frechet``, ``precision``, ``recall``, ``density``, ``coverage`` (k =
      :data:`~mangagan_app.ml.metrics.K_NEAREST`) — tagger features of ``faces_per_side``
      generated faces against real half A, where ``faces_per_side`` = min(len(generated),
      len(real) // 2);
    * ``frechet_floor``, ``floor_precision``, ``floor_recall``, ``floor_density``,
      ``floor_coverage`` — real half B against A, as many faces: what a generator drawing
      exactly like the real faces would score;
    * ``memorisation`` — share of all generated faces nearer a training face (as drawn or
      mirrored) than 99 % of the real faces are, in pixels and tagger features both;
      ``memorisation_pixels`` / ``memorisation_features`` in one space each;
    * ``as_asked_<group>`` for each exclusive group the tagger knows (e.g.
      ``as_asked_hair_colour``), when ``asked`` is given: the share of the faces asked
      for a value of that group that the tagger reads as that value;
    * ``tagger_ceiling_<group>`` for the same groups, when ``real_cond`` is given and
      some real face is labelled with the group: the tagger's accuracy on those real
      faces, the most an ``as_asked`` share can show;
    * ``faces_per_side``, ``generated_faces``, ``real_faces``, ``training_faces``, ``k``.

    Raises ``ValueError`` for arrays that are not uint8 RGB batches, ``asked`` /
    ``real_cond`` / ``real_mask`` that do not fit, or fewer than 12 real faces (two
    halves of more than ``k``).
    """
    for name, images in (("generated", generated), ("real", real), ("training", training)):
        _check_faces(name, images)
    vocabulary = tagger.vocabulary
    for name, labels, rows in (
        ("asked", asked, len(generated)),
        ("real_cond", real_cond, len(real)),
        ("real_mask", real_mask, len(real)),
    ):
        if labels is not None and np.shape(labels) != (rows, vocabulary.dim):
            raise ValueError(f"{name}: need shape ({rows}, {vocabulary.dim}), got {np.shape(labels)}")
    height, width = generated.shape[1:3]
    real, training = _at_size(real, height, width), _at_size(training, height, width)
    rng = np.random.default_rng(seed)
    half = min(len(generated), len(real) // 2)
    if half <= K_NEAREST:
        raise ValueError(
            f"need more than {2 * K_NEAREST + 1} real faces (two halves of more than k = {K_NEAREST}) "
            f"and more than {K_NEAREST} generated faces, got {len(real)} and {len(generated)}"
        )
    gen_features, gen_scores = tagger.read(generated)
    real_features, real_scores = tagger.read(real)
    order = rng.permutation(len(real))
    picked = rng.choice(len(generated), half, replace=False)  # not the first: they may be sorted by what was asked
    out: dict = feature_metrics(
        gen_features[picked], real_features[order[:half]], real_features[order[half : 2 * half]]
    )
    originality = originality_report(
        generated, real, training, tagger.features(training), [str(i) for i in range(len(training))], tagger
    )
    out.update(
        memorisation=originality["memorisation_rate"],
        memorisation_pixels=originality["pixels"]["memorisation_rate"],
        memorisation_features=originality["features"]["memorisation_rate"],
    )
    groups = [g for g in tagger.known_groups if vocabulary.group(g).exclusive]
    if asked is not None:
        asked = np.asarray(asked, np.float32)
        read = accuracy_report(
            gen_scores, asked, vocabulary, mask=_known_exclusive_mask(asked, vocabulary), groups=groups
        )
        out.update({f"as_asked_{g}": read["groups"][g] for g in groups if read["faces_per_group"][g]})
    if real_cond is not None:
        mask = np.ones(real_cond.shape, np.float32) if real_mask is None else np.asarray(real_mask, np.float32)
        ceiling = accuracy_report(real_scores, np.asarray(real_cond, np.float32), vocabulary, mask=mask, groups=groups)
        out.update({f"tagger_ceiling_{g}": ceiling["groups"][g] for g in groups if ceiling["faces_per_group"][g]})
    out.update(
        faces_per_side=half,
        generated_faces=len(generated),
        real_faces=len(real),
        training_faces=len(training),
        k=K_NEAREST,
    )
    return out


# ---- output ------------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "  n/a" if x is None or x != x else f"{100 * x:5.1f}%"


def format_report(result: dict) -> str:
    """The evaluation as a plain-text table (what ``mangagan evaluate`` prints)."""
    lines = [
        f"model {result['model']['name']} ({result['model']['resolution']} px, "
        f"{result['model']['training_steps']} steps) vs {result['data']['faces']} training faces "
        f"in {result['data']['folder']}"
    ]
    acc = result["tagger"]["accuracy_unseen"] or {}
    kind = (
        "sketchbook faces"
        if result["tagger"].get("test_kind", "sketchbook") == "sketchbook"
        else "faces of its test folder"
    )
    lines.append(f"tagger accuracy on unseen {kind}: " + ", ".join(f"{g} {_pct(v).strip()}" for g, v in acc.items()))
    lines.append(
        "tagger accuracy on training faces:          "
        + ", ".join(f"{g} {_pct(v).strip()}" for g, v in result["tagger"]["accuracy_training_faces"].items())
    )
    if result["tagger"].get("accuracy_unseen_real_faces"):
        lines.append(
            "tagger accuracy on unseen real faces:       "
            + ", ".join(f"{g} {_pct(v).strip()}" for g, v in result["tagger"]["accuracy_unseen_real_faces"].items())
        )
    lines.append("")
    lines.append(
        "generated faces asked for each value, read back by the tagger; 'real' = the tagger on real "
        f"{result['tagger'].get('ceiling_faces', 'training faces')} with that label (its ceiling)"
    )
    lines.append(
        f"{'attribute':<18}{'asked':>6}{'read as asked':>15}{'real':>8}{'goal':>8}   "
        f"{'absent read absent':>19}{'real':>8}"
    )
    for tag, v in result["attributes"]["values"].items():
        goal = GOALS.get(v["group"], 0.9)
        mark = " " if v["read_as_asked"] >= goal else "✗"
        absent = v.get("absent_read_as_absent")
        real_absent = v.get("real_absent_read_as_absent")
        lines.append(
            f"{tag:<18}{v['asked']:>6}{_pct(v['read_as_asked']):>15}{_pct(v.get('real_read_as_labelled')):>8}"
            f"{_pct(goal):>8} {mark} {_pct(absent) if absent is not None else '':>19}"
            f"{_pct(real_absent) if absent is not None else '':>8}"
        )
    lines.append("")
    for g, s in result["attributes"]["groups"].items():
        lines.append(
            f"{g:<22} mean {_pct(s['mean'])}  worst {_pct(s['worst'])}  "
            f"values below the {_pct(GOALS.get(g, 0.9)).strip()} goal: {s['values_below_goal']}"
        )
    unmeasured = result["tagger"].get("unmeasured_groups")
    if unmeasured:
        lines.append(
            f"not measured (the tagger does not know them or the training labels never tag them): "
            f"{', '.join(unmeasured)}"
        )
    f = result["fidelity"]
    lines += [
        "",
        f"Fréchet distance ({f['space']}, {f['faces_per_side']} faces a side): "
        f"generated vs real {f['generated_vs_real']:.3f}, real vs real floor {f['real_vs_real_floor']:.3f}",
        f"  ({f['note']})",
    ]
    prdc = f["prdc"]
    lines.append(f"k-NN manifolds (k = {prdc['k']}, same faces; Kynkäänniemi et al. 2019, Naeem et al. 2020):")
    for label, key in (("generated vs real", "generated_vs_real"), ("real vs real floor", "real_vs_real_floor")):
        lines.append(f"  {label:<19}" + "  ".join(f"{m} {prdc[key][m]:.3f}" for m in PRDC))
    o = result["originality"]
    lines += ["", f"originality (unseen real faces: {o['unseen_source']})"]
    for space, unit in (("pixels", "RMS per channel"), ("features", "tagger features")):
        s = o[space]
        lines.append(
            f"  nearest training face, {unit:<16} generated median {s['generated']['median']:.4f} "
            f"p1 {s['generated']['p01']:.4f} | unseen real median {s['unseen_real']['median']:.4f} "
            f"p1 {s['unseen_real']['p01']:.4f} | nearer than 99 % of unseen: {_pct(s['memorisation_rate'])}"
        )
    goal_m = GOALS["memorisation_max"]
    lines.append(
        f"  memorisation rate (both spaces): {_pct(o['memorisation_rate'])} "
        f"(goal ≤ {_pct(goal_m).strip()}) {'' if o['memorisation_rate'] <= goal_m else '✗'}"
    )
    d = result["detectability"]
    if d is None:
        lines += ["", "detectability: not measured (calibrated on sketchbook data only)"]
    else:
        lines += [
            "",
            f"detectability: animeface finds {_pct(d['generated_found']).strip()} of generated and "
            f"{_pct(d['real_found']).strip()} of real faces ({d['faces_each']} each, {d['upscale']}): "
            f"ratio {d['ratio']:.3f} (goal ≥ {GOALS['detectability']})",
        ]
    lines.append(f"({result['seconds']:.0f} s)")
    return "\n".join(lines)


def card_metrics(result: dict, command: str = "") -> dict:
    """The summary of an evaluation that goes into the model card's ``metrics``
    (without ``detectability`` when it was not measured)."""
    o, f, d = result["originality"], result["fidelity"], result["detectability"]
    metrics = {
        "evaluated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "settings": result["settings"],
        "tagger_sha256": result["tagger"]["sha256"],
        "tagger_accuracy_unseen": result["tagger"]["accuracy_unseen"],
        "attributes": {g: {"mean": s["mean"], "worst": s["worst"]} for g, s in result["attributes"]["groups"].items()},
        "attribute_values": {t: v["read_as_asked"] for t, v in result["attributes"]["values"].items()},
        "frechet_tagger_features": {
            "generated_vs_real": f["generated_vs_real"],
            "real_vs_real_floor": f["real_vs_real_floor"],
            "note": f["note"],
        },
        "prdc_tagger_features": f["prdc"],
        "memorisation_rate": o["memorisation_rate"],
        "memorisation_rate_pixels": o["pixels"]["memorisation_rate"],
        "memorisation_rate_features": o["features"]["memorisation_rate"],
        "goals": result["goals"],
    }
    if d is not None:
        metrics["detectability"] = {
            "ratio": d["ratio"],
            "generated_found": d["generated_found"],
            "real_found": d["real_found"],
        }
    return metrics


def write_card_metrics(weights: str | Path, result: dict, command: str = "") -> dict:
    """Store :func:`card_metrics` of ``result`` in the model card of ``weights``; returns the card.

    Raises :class:`~mangagan_app.ml.checkpoint.WeightsError` when the card is missing or unreadable.
    """
    return update_card(weights, metrics=card_metrics(result, command))
