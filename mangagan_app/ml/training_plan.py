"""What a training run will do, worked out before it starts: faces, batch, steps, time.

The Train tab shows a :class:`TrainingPlan` before Start and runs what it says; the
same functions serve the command line. A plan fits the settings to the data it is
given: a batch larger than the data is lowered (a run cannot take a step otherwise),
and :func:`suggested_settings` also lengthens a run whose data is too small to fill
the steps a GAN needs. Its notes say in words what was changed and what is risky.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from mangagan_app.config import TrainingConfig
from mangagan_app.core.catalogue import DB_NAME as CATALOGUE_FILE
from mangagan_app.core.catalogue import Catalogue
from mangagan_app.ml.dataset import folder_items
from mangagan_app.ml.device import choose_device
from mangagan_app.ml.run_history import RunHistory
from mangagan_app.ml.shards import ShardSet, is_shard_folder
from mangagan_app.ml.trainer import CHECKPOINT, use_bf16

# Fewer optimiser steps than this teach a GAN next to nothing, however few the faces:
# the shipped model took 15,000 from scratch, and the trainer's health checks only
# start judging a run after 200.
MIN_STEPS = 2000
# Below this many faces a run from random weights rarely learns to draw a face: 49 faces
# drew noise after 900 steps (the issue-16 walk; StyleGAN2-ADA collapses below ~100 too).
# The Train tab starts such data from the shipped model (fine-tuning it also beats scratch on
# 312 and 1,005 real faces, README "Your own characters", but there it is the person's choice).
FEW_FACES = 100
# Images per CPU-second at 64 px and width 32, one thread, float32, measured on the
# developers' 2-core EPYC (README, "Speed"); width 16 and 48 measured 330 and 54, which
# width ** -1.7 meets within 8 %; bfloat16 autocast measured 194.
CPU_IMAGES_PER_SECOND = 110.0
WIDTH_EXPONENT = 1.7
BF16_SPEEDUP = 194.0 / 110.0
DRAGAN_COST = 1.6  # its gradient penalty makes a step this much dearer
RUN_FILES = (CHECKPOINT, "config.json", "stats.jsonl")
_DEFAULT_RUN_NAME = re.compile(r"run-\d{8}-\d{6}(-\d+)?")


@dataclass(frozen=True)
class FaceCount:
    """How many faces a data source holds and what they are, for a sentence."""

    faces: int
    what: str  # "kept faces of the reviewed dataset", "face images", ...
    note: str = ""  # e.g. that crops still wait for review


def count_training_faces(folder: str | Path) -> FaceCount:
    """The faces a run on ``folder`` would train on, counted without decoding them.

    A dataset made by the Dataset tab gives its kept crops, a packed folder its
    manifest's count, any other folder its images. Raises ``FileNotFoundError`` /
    ``NotADirectoryError`` when ``folder`` is not a folder and ``ValueError`` when a
    packed folder's manifest is unreadable.
    """
    folder = Path(folder)
    if (folder / CATALOGUE_FILE).is_file():
        with Catalogue(folder) as catalogue:
            counts = catalogue.decision_counts()
        waiting = counts.get("unreviewed", 0)
        note = (
            f"{waiting} {'crop is' if waiting == 1 else 'crops are'} not reviewed yet: "
            "only kept crops are trained on (review them in the Dataset tab)"
            if waiting
            else ""
        )
        return FaceCount(counts.get("keep", 0), "kept faces of the reviewed dataset", note)
    if is_shard_folder(folder):
        return FaceCount(len(ShardSet(folder)), "packed faces")
    return FaceCount(len(folder_items(folder)), "face images")


def fitted_batch(faces: int, batch: int) -> int:
    """``batch``, or when the data holds fewer faces, the largest power of two that fits them.

    Raises ``ValueError`` when there are fewer than 2 faces (a batch needs two).
    """
    if faces < 2:
        raise ValueError(f"{faces} face{'s' if faces != 1 else ''} to train on: a run needs at least 2")
    if faces >= batch:
        return batch
    return 2 ** int(math.log2(faces))


def suggested_settings(faces: int, cfg: TrainingConfig) -> tuple[int, int]:
    """(batch, epochs) that fit ``faces``: the batch of ``cfg`` fitted to the data, and at least
    ``cfg.epochs`` epochs, more when that many would not reach :data:`MIN_STEPS` steps."""
    batch = fitted_batch(faces, cfg.batch)
    return batch, max(cfg.epochs, math.ceil(MIN_STEPS / (faces // batch)))


def fit_note(faces: int, cfg: TrainingConfig) -> str:
    """What :func:`suggested_settings` changed in ``cfg`` for ``faces``, in a sentence ("" when nothing)."""
    batch, epochs = suggested_settings(faces, cfg)
    changes = []
    if batch != cfg.batch:
        changes.append(f"{batch} faces per step (fewer than the usual {cfg.batch})")
    if epochs != cfg.epochs:
        changes.append(f"{epochs:,} passes (more than the usual {cfg.epochs}) for {epochs * (faces // batch):,} steps")
    return f"Fitted to {faces:,} faces: {' and '.join(changes)}." if changes else ""


def cpu_images_per_second(cfg: TrainingConfig, threads: int, bf16: bool) -> float:
    """A first guess of the training speed on this CPU, from the cost of a step measured on the
    developers' machine, scaled by width, resolution (the pixels), precision, loss and threads."""
    rate = CPU_IMAGES_PER_SECOND * (32 / cfg.width) ** WIDTH_EXPONENT * (64 / cfg.resolution) ** 2
    rate *= (BF16_SPEEDUP if bf16 else 1.0) * threads
    return rate / (DRAGAN_COST if cfg.loss == "dragan" else 1.0)


def measured_images_per_second(runs_dir: str | Path, cfg: TrainingConfig) -> float | None:
    """The speed the newest earlier run in ``runs_dir`` with the same resolution, width and loss
    logged (median of its last ticks), or None when there is no such run."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    stats = sorted(runs_dir.glob("*/stats.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in stats:
        try:
            saved = json.loads((path.parent / "config.json").read_text(encoding="utf-8"))
            if (saved.get("resolution"), saved.get("width"), saved.get("loss")) != (
                cfg.resolution,
                cfg.width,
                cfg.loss,
            ):
                continue
            rates = [json.loads(line)["img_per_sec"] for line in path.read_text(encoding="utf-8").splitlines()[-5:]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if rates:
            return float(sorted(rates)[len(rates) // 2])
    return None


def format_duration(seconds: float) -> str:
    """``seconds`` for people: "under a minute", "7 min", "2 h 10 min"."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass(frozen=True)
class TrainingPlan:
    """What a run of ``cfg`` on ``faces`` faces will do; ``batch`` is the one it uses."""

    faces: int
    what: str
    batch: int
    asked_batch: int
    epochs: int
    steps: int
    seconds: float | None  # None: no guess (a GPU without an earlier run to go by)
    measured: bool  # the speed comes from an earlier run here, not from the reference figures
    fine_tunes: bool  # starts from an earlier run's networks
    notes: tuple[str, ...]

    @property
    def batch_lowered(self) -> bool:
        return self.batch < self.asked_batch

    @property
    def risky(self) -> bool:
        """Few faces and random weights: the run may well draw noise however long it trains."""
        return self.faces < FEW_FACES and not self.fine_tunes

    def batch_note(self) -> str:
        """The sentence saying the batch was lowered, or "" when it was not."""
        if not self.batch_lowered:
            return ""
        return (
            f"Faces per step lowered from {self.asked_batch} to {self.batch}: {self.faces} faces are fewer "
            f"than one step of {self.asked_batch}."
        )

    def summary(self) -> str:
        """One sentence: faces, steps and time."""
        if self.seconds is None:
            time_part = ""
        else:
            took = format_duration(self.seconds)
            time_part = (f", {took}" if took == "under a minute" else f", about {took}") + (
                "" if self.measured else " (a first guess)"
            )
        return (
            f"Trains on {self.faces:,} {self.what}: {self.steps:,} steps of {self.batch} faces "
            f"({self.epochs:,} passes){time_part}."
        )


def plan_training(cfg: TrainingConfig, count: FaceCount, *, images_per_second: float | None = None) -> TrainingPlan:
    """The plan of a new run of ``cfg`` on the faces of ``count``.

    ``images_per_second`` is a measured speed (see :func:`measured_images_per_second`);
    without one a CPU run is estimated from the reference figures and a GPU run gets
    no estimate. Raises ``ValueError`` when there are fewer than 2 faces.
    """
    batch = fitted_batch(count.faces, cfg.batch)
    steps = cfg.epochs * (count.faces // batch)
    measured = images_per_second is not None
    if images_per_second is None:
        choice = choose_device(cfg.device, leave_core_for_gui=cfg.leave_core_for_gui)
        if choice.device.type == "cpu":
            threads = min(cfg.threads, choice.threads) if cfg.threads else choice.threads
            images_per_second = cpu_images_per_second(cfg, threads, use_bf16(cfg.precision, choice.device))
    seconds = None if images_per_second is None else steps * batch / images_per_second
    plan = TrainingPlan(
        count.faces, count.what, batch, cfg.batch, cfg.epochs, steps, seconds, measured, bool(cfg.init_from), ()
    )
    notes = [note for note in (count.note, plan.batch_note()) if note]
    if steps < MIN_STEPS:
        notes.append(
            f"{steps:,} steps are few: a run needs about {MIN_STEPS:,} to learn anything "
            f"({math.ceil(MIN_STEPS / (count.faces // batch)):,} passes over these faces)."
        )
    if plan.risky:
        notes.append(
            f"{count.faces:,} faces are few to learn from scratch: such runs often draw only noise. "
            'Fine-tuning the shipped model or a run that already draws faces ("Start from") works with far fewer.'
        )
    return replace(plan, notes=tuple(notes))


def holds_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` already holds (part of) a training run."""
    return any((Path(run_dir) / name).exists() for name in RUN_FILES)


def new_run_folder(runs_dir: str | Path, now: float | None = None) -> Path:
    """A run folder in ``runs_dir`` named after the time (``run-20261202-153000``), not holding a run."""
    return fresh_run_folder(Path(runs_dir) / time.strftime("run-%Y%m%d-%H%M%S", time.localtime(now)))


def fresh_run_folder(run_dir: str | Path, now: float | None = None) -> Path:
    """``run_dir`` if it holds no run yet, else a new folder beside it for a second run.

    A name the app made (``run-<date>-<time>``) is renamed after ``now``; a name of the
    user's own gets ``-2``, ``-3``, … Never returns a folder that holds a run.
    """
    run_dir = Path(run_dir)
    if not holds_run(run_dir):
        return run_dir
    if _DEFAULT_RUN_NAME.fullmatch(run_dir.name):
        stem = time.strftime("run-%Y%m%d-%H%M%S", time.localtime(now))
        if not holds_run(run_dir.with_name(stem)):
            return run_dir.with_name(stem)
    else:
        stem = re.sub(r"-\d{1,3}$", "", run_dir.name)  # "my-oc-2" → "my-oc-3", not "my-oc-2-2"
    n = 2
    while holds_run(run_dir.with_name(f"{stem}-{n}")):
        n += 1
    return run_dir.with_name(f"{stem}-{n}")


def _fits(saved: TrainingConfig, cfg: TrainingConfig) -> bool:
    """Whether a new run of ``cfg`` can start from the networks of a run of ``saved``
    (the same networks; an input-only G may grow into a FiLM one)."""
    same = ("resolution", "width", "z_dim", "conditioning", "g_upsample", "d_norm")
    if any(getattr(saved, k) != getattr(cfg, k) for k in same):
        return False
    return saved.g_conditioning == cfg.g_conditioning or (saved.g_conditioning, cfg.g_conditioning) == ("input", "film")


def runs_to_start_from(
    folders: Iterable[str | Path], cfg: TrainingConfig, *, min_steps: int = MIN_STEPS
) -> list[tuple[Path, int]]:
    """(run folder, steps) of the runs in ``folders`` a new run of ``cfg`` could fine-tune,
    most steps first: a checkpoint, networks that fit, at least ``min_steps`` steps logged
    and no warning (a run that failed is no better a start than random weights)."""
    found: dict[Path, int] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for run in folder.iterdir():
            try:
                if run in found or not (run / CHECKPOINT).is_file():
                    continue
                saved = TrainingConfig.from_dict(json.loads((run / "config.json").read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                continue
            history = RunHistory.from_stats(run / "stats.jsonl")
            steps = max((points[-1][0] for points in history.series.values() if points), default=0)
            if _fits(saved, cfg) and steps >= min_steps and not history.warning:
                found[run] = steps
    return sorted(found.items(), key=lambda item: -item[1])
