"""Train the conditional GAN into a run folder, resumably and observably.

A run folder holds ``config.json`` (the :class:`TrainingConfig`), ``stats.jsonl``
(one line per tick: losses, D(real) and D(fake) as probabilities, r_t =
E[sign(D(real))], the augmentation probability ``aug_p``, img/s, seconds per tick, and
a ``warning`` in words when the run has failed, see :mod:`mangagan_app.ml.health`), ``previews/step_NNNNNNN.png``
(one row per hair colour, fixed noise, drawn by the EMA generator) and
``checkpoint.pt`` (+ ``checkpoint.prev.pt``, the one before). Everything the loop
draws at random comes from generators seeded by (seed, epoch) or (seed, step), so
a resumed run sees exactly the batches and noise an uninterrupted run would.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mangagan_app.config import TrainingConfig, parse_augment_operations
from mangagan_app.core.attributes import VOCABULARY, Vocabulary, VocabularyChoice
from mangagan_app.core.files import atomic_write_bytes, atomic_write_json, new_folders
from mangagan_app.core.sketchbook.dataset import ensure_sketchbook
from mangagan_app.ml import distributed, losses
from mangagan_app.ml.augment import AdaptiveProbability, augment
from mangagan_app.ml.checkpoint import WeightsError, load_for_fine_tune
from mangagan_app.ml.dataset import TrainingFaces, load_face_folder
from mangagan_app.ml.device import choose_device
from mangagan_app.ml.health import HealthMonitor
from mangagan_app.ml.networks import Architecture, Discriminator, Generator, regrow_conditions
from mangagan_app.ml.resume_state import (
    CHECKPOINT,
    RunFolderError,
    load_newest,
    load_resume_state,
    save_checkpoint,
)
from mangagan_app.ml.sampling import hair_colour_rows, image_grid, noise, to_uint8
from mangagan_app.ml.shards import ShardSet, is_shard_folder

log = logging.getLogger(__name__)


PREVIEW_COLUMNS = 8
# Settings that may change when a run is resumed; the others define the run.
RESUMABLE_CHANGES = frozenset(
    {
        "epochs",
        "tick_steps",
        "preview_steps",
        "checkpoint_minutes",
        "checkpoint_steps",
        "device",
        "threads",
        "precision",
        "leave_core_for_gui",
        "data",
        "lr_decay_steps",
        # Augmentation only shapes what D is shown: a run may go on with it
        # switched off or fixed, as in a final low-noise phase.
        "augment",
        "augment_p",
        "ada_target",
    }
)


@dataclass
class TrainProgress:
    """One progress report. In the ``loading`` phase ``step``/``total_steps`` count
    decoded images; in ``training`` (once per tick) they count optimiser steps.
    ``started`` comes once the data is loaded and the networks are built, before
    the first step (``detail`` says what is trained where); ``first_step`` after the
    first step of the session, so a long first tick is not silent."""

    phase: str
    step: int
    total_steps: int
    epoch: int = 0
    epochs: int = 0
    images_per_sec: float = 0.0
    eta_seconds: float = 0.0
    losses: dict[str, float] = field(default_factory=dict)
    warning: str = ""  # set on the tick a failure is first seen (see ml.health)
    detail: str = ""


@dataclass
class Preview:
    step: int
    path: Path
    image: np.ndarray  # (H, W, 3) uint8, one row per hair colour
    faces: np.ndarray  # (B, H, W, 3) uint8, the faces of the grid row by row


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    total_steps: int
    epoch: int
    stopped: bool
    checkpoint: Path


class RunFinishedError(RunFolderError):
    """``resume`` of a run that has already trained all its epochs: nothing to do."""

    def __init__(self, run_dir: Path, step: int, epochs: int):
        self.run_dir, self.step, self.epochs = run_dir, step, epochs
        super().__init__(
            f"{run_dir} has finished ({step} steps, epoch {epochs} of {epochs}); "
            "to train longer, resume it with more epochs"
        )


def epoch_order(seed: int, epoch: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The data order and the flips of one epoch, a pure function of (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g), torch.rand(n, generator=g) < 0.5


class GanModels:
    """G, D, the EMA copy of G, their optimisers and the augmentation probability."""

    def __init__(self, cfg: TrainingConfig, arch: Architecture, device: torch.device):
        torch.manual_seed(cfg.seed)
        self.g = Generator(arch).to(device)
        self.d = Discriminator(arch).to(device)
        self.d.freeze_blocks(cfg.freeze_d)
        self.g_ema = Generator(arch).to(device).eval().requires_grad_(False)
        self.g_ema.load_state_dict(self.g.state_dict())
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr_d, betas=betas)
        self.augment = AdaptiveProbability(
            p=0.0 if cfg.augment == "none" else cfg.augment_p,
            target=cfg.ada_target,
            kimg=cfg.ada_kimg,
            batch=cfg.batch,
            adaptive=cfg.augment == "ada",
        )
        # What a training step calls: the networks themselves, or their
        # DistributedDataParallel wrappers after distribute().
        self.g_train: torch.nn.Module = self.g
        self.d_train: torch.nn.Module = self.d

    def distribute(self, device: torch.device) -> None:
        """Wrap G and D for data-parallel training in the process group already joined.

        G's BatchNorm layers switch to global-batch statistics, so the N processes
        train as one process would on the same global batch.
        """
        from torch.nn.parallel import DistributedDataParallel

        distributed.with_global_batch_norm(self.g)
        ids = [device.index] if device.type == "cuda" else None
        self.g_train = DistributedDataParallel(self.g, device_ids=ids)
        self.d_train = DistributedDataParallel(self.d, device_ids=ids)

    @torch.no_grad()
    def update_ema(self, beta: float, step: int) -> None:
        # Warm-up: a short horizon early on, so the EMA copy is not dominated by the
        # random initial weights for the first few thousand steps.
        beta = min(beta, (1.0 + step) / (10.0 + step))
        for p_ema, p in zip(self.g_ema.parameters(), self.g.parameters(), strict=True):
            p_ema.lerp_(p, 1.0 - beta)
        # BatchNorm running statistics follow the live generator.
        for b_ema, b in zip(self.g_ema.buffers(), self.g.buffers(), strict=True):
            b_ema.copy_(b)

    def state(self) -> dict:
        return {
            "G": self.g.state_dict(),
            "D": self.d.state_dict(),
            "G_ema": self.g_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "augment": self.augment.state(),
        }

    def load(self, state: dict) -> None:
        self.g.load_state_dict(state["G"])
        self.d.load_state_dict(state["D"])
        self.g_ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if "augment" in state:  # saved before augmentation existed: p stays 0
            self.augment.load(state["augment"])


def train_step(
    models: GanModels,
    cfg: TrainingConfig,
    real: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    faces: TrainingFaces,
    step: int,
    device: torch.device,
    *,
    bf16: bool = False,
    world: int = 1,
    rank: int = 0,
    train_g: bool = True,
) -> dict[str, float]:
    """One D update and one G update on ``real`` = (images, conditions, known-masks);
    without ``train_g``, the D update alone (D catching up with a G that stays as it is).

    Noise, fake labels and augmentation come from a generator seeded by (cfg.seed,
    step); in data-parallel training (``world`` processes) ``real`` is this ``rank``'s
    slice of the global batch, and the noise is drawn for the global batch and sliced
    alike. With ``bf16`` the forward passes run under bfloat16 autocast (weights,
    optimiser state and losses stay float32). Returns the step's losses, mean D
    outputs as probabilities, r_t and the augmentation probability as floats.

    D must tell real from fake by the image alone. A fake is therefore judged with
    the known-mask of a random real face (``faces.sample_labels``), whose condition it
    was drawn with: a real face that knows only its hair colour and a fake look the
    same to the projection term, where a fully known fake would give itself away. G's
    attribute loss still covers every slot some real face knows
    (``faces.known_columns``), since the classifier has learned those.
    """
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    x, cond, mask = (t.to(device) for t in real)
    part = slice(rank * len(x), (rank + 1) * len(x))
    z = torch.randn((len(x) * world, cfg.z_dim), generator=g)[part].to(device)
    fake_cond, fake_mask = (t[part].to(device) for t in faces.sample_labels(len(x) * world, g))
    taught = faces.known_columns.to(device).expand_as(fake_cond)
    d_loss, g_loss = losses.ADVERSARIAL[cfg.loss]
    p = models.augment.p
    alterations = parse_augment_operations(cfg.augment_operations)
    use_aux = models.d.aux is not None
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)
    stats: dict[str, float] = {}

    with autocast, torch.set_grad_enabled(train_g):
        fake = models.g_train(z, fake_cond)  # (B, 3, H, W)
    with autocast:
        real_logit, real_aux = models.d_train(augment(x, p, g, alterations), cond, mask)
        fake_logit, _ = models.d_train(augment(fake.detach(), p, g, alterations), fake_cond, fake_mask)
        real_logit, fake_logit = real_logit.float(), fake_logit.float()
        loss_d = d_loss(real_logit, fake_logit)
        stats["d_adv"] = loss_d.item()
        if use_aux:
            cls_real = losses.attribute_loss(real_aux.float(), cond, mask, faces.vocabulary)
            loss_d = loss_d + cfg.aux_weight * cls_real
            stats["d_cls"] = cls_real.item()
    if cfg.loss == "dragan":
        # gradient penalty in full precision: second derivatives are fragile in bf16
        gp = losses.dragan_penalty(models.d, x, cond, mask, g.manual_seed(g.initial_seed() + 1))
        loss_d = loss_d + cfg.dragan_weight * gp
        stats["gp"] = gp.item()
    models.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    models.opt_d.step()

    if train_g:
        with autocast:
            fake_logit_g, fake_aux = models.d_train(augment(fake, p, g, alterations), fake_cond, fake_mask)
            loss_g = g_loss(fake_logit_g.float())
            stats["g_adv"] = loss_g.item()
            if use_aux:
                cls_fake = losses.attribute_loss(fake_aux.float(), fake_cond, taught, faces.vocabulary)
                loss_g = loss_g + cfg.aux_weight * cls_fake
                stats["g_cls"] = cls_fake.item()
        models.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        models.opt_g.step()
        models.update_ema(cfg.ema_beta, step)

    stats["d_real"] = torch.sigmoid(real_logit.detach().float()).mean().item()
    stats["d_fake"] = torch.sigmoid(fake_logit.detach().float()).mean().item()
    stats["r_t"] = torch.sign(real_logit.detach()).mean().item()
    stats["aug_p"] = p
    return stats


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether ``precision`` ("auto", "bf16", "fp32") means bfloat16 autocast on ``device``.

    "auto" picks bf16 on CUDA GPUs that support it and on CPUs with native bf16
    instructions (AVX512-BF16 / AMX), where it measured 1.8× faster than float32
    for this model; elsewhere float32.
    """
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return _cpu_has_native_bf16()
    return False


def _cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def _write_preview(
    models: GanModels, run_dir: Path, step: int, fixed_z: torch.Tensor, fixed_cond: torch.Tensor
) -> Preview:
    with torch.no_grad():
        images = to_uint8(models.g_ema(fixed_z, fixed_cond))
    grid = image_grid(images, PREVIEW_COLUMNS)
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")
    path = run_dir / "previews" / f"step_{step:07d}.png"
    atomic_write_bytes(path, buf.getvalue())
    return Preview(step, path, grid, images)


def _truncate_stats(path: Path, step: int) -> None:
    """Drop stats lines written after the checkpoint being resumed (they will be redone)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
    atomic_write_bytes(path, "".join(k + "\n" for k in kept).encode("utf-8"))


def _check_resume_config(saved: dict, cfg: TrainingConfig) -> None:
    wanted = cfg.to_dict()
    # A setting newer than the saved run had, for that run, the value it had before it existed.
    saved = TrainingConfig.from_dict(saved).to_dict()
    changed = [k for k in wanted if k not in RESUMABLE_CHANGES and saved.get(k) != wanted[k]]
    if changed:
        raise RunFolderError(
            "cannot resume with different " + ", ".join(f"{k} ({saved.get(k)!r} → {wanted[k]!r})" for k in changed)
        )


def train(
    cfg: TrainingConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_preview: Callable[[Preview], None] | None = None,
    faces: TrainingFaces | None = None,
) -> TrainResult:
    """Train (or, with ``resume``, continue training) into ``run_dir``.

    ``faces`` overrides loading ``cfg.data`` (a folder of images with ``.txt`` tag
    sidecars). ``progress`` is called while loading and once per tick;
    ``should_stop`` is polled before every step — when it returns True the run saves
    a checkpoint and returns with ``stopped=True``; ``on_preview`` receives each
    preview grid. Callbacks run on the training thread.

    Raises ``RunFolderError`` when ``run_dir`` already holds a checkpoint and
    ``resume`` is False, when resuming finds no readable checkpoint, or when the
    settings that define the run differ from the checkpoint's (``RunFinishedError``
    when the resumed run has trained all ``cfg.epochs``); ``DeviceUnavailableError``
    for a device this machine lacks; ``FileNotFoundError`` / ``ValueError`` from
    loading the data. A run folder created by a call that fails is removed again
    while it is empty.
    """
    run_dir = Path(run_dir)
    ranks = distributed.from_environment()
    with new_folders(*((run_dir, run_dir / "previews") if ranks.is_main else ())):
        if ranks.is_main:
            _remove_stale_temporaries(run_dir)
        state = None
        # A checkpoint.pt that failed to load is overwritten by the next save, not kept as the fallback.
        keep_current = True
        if resume:
            state, loaded_from = load_newest(run_dir)
            keep_current = loaded_from.name == CHECKPOINT
            _check_resume_config(state["config"], cfg)
            if int(state["epoch"]) >= cfg.epochs:
                raise RunFinishedError(run_dir, int(state["step"]), cfg.epochs)
        elif (run_dir / CHECKPOINT).exists():
            raise RunFolderError(f"{run_dir} already holds a training run; resume it or choose another folder")

        source = None
        if cfg.init_from and state is None:
            source = _load_source(cfg.init_from)
            cfg = _in_source_architecture(cfg, source)
        choice = choose_device(cfg.device, leave_core_for_gui=cfg.leave_core_for_gui, threads=cfg.threads)
        if choice.device.type == "cpu":
            torch.set_num_threads(choice.threads)
        bf16 = use_bf16(cfg.precision, choice.device)
        ranks, device = distributed.start(choice.device, cfg.batch)
        try:
            result = _train(
                cfg,
                run_dir,
                state,
                keep_current,
                ranks,
                device,
                bf16,
                choice.description,
                progress if ranks.is_main else None,
                should_stop,
                on_preview if ranks.is_main else None,
                faces,
                source,
            )
        except BaseException:
            distributed.stop(ranks, all_finished=False)
            raise
        distributed.stop(ranks)
        return result


@dataclass(frozen=True)
class SketchbookSource:
    """Train on ``count`` sketchbook faces, drawn into ``folder`` first if not there yet."""

    folder: Path
    count: int
    seed: int = 0


def train_drawing_first(
    cfg: TrainingConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    sketchbook: SketchbookSource | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_preview: Callable[[Preview], None] | None = None,
) -> TrainResult:
    """:func:`train`, after drawing the sketchbook faces ``sketchbook`` names (the Train tab's
    "Sketchbook faces drawn by the app"); drawing reports ``TrainProgress("drawing", …)``.

    Raises ``InterruptedError`` when stopped while drawing (nothing was trained), else what
    :func:`train` raises.
    """
    if sketchbook is not None:
        drawn = ensure_sketchbook(
            sketchbook.folder,
            sketchbook.count,
            size=cfg.resolution,
            seed=sketchbook.seed,
            should_stop=should_stop,
            progress=(lambda done, total: progress(TrainProgress("drawing", done, total))) if progress else None,
        )
        if drawn.stopped:
            raise InterruptedError("Stopped while drawing the sketchbook; nothing was trained.")
    return train(cfg, run_dir, resume=resume, progress=progress, should_stop=should_stop, on_preview=on_preview)


def _set_learning_rates(models: GanModels, cfg: TrainingConfig, step: int, total_steps: int) -> None:
    """Both learning rates for ``step``: up from zero over the first ``lr_warmup_steps``,
    constant, then linearly to zero over the last ``lr_decay_steps``."""
    factor = min(1.0, (total_steps - step) / cfg.lr_decay_steps) if cfg.lr_decay_steps else 1.0
    if cfg.lr_warmup_steps:
        factor = min(factor, (step + 1) / cfg.lr_warmup_steps)
    for opt, lr in ((models.opt_g, cfg.lr_g), (models.opt_d, cfg.lr_d)):
        for group in opt.param_groups:
            group["lr"] = lr * factor


def _load_source(source: str) -> dict:
    """The state a run started from ``source`` takes: a run folder's or checkpoint file's
    newest checkpoint, or a model (``.safetensors``/``.json``) that ships its discriminator."""
    path = Path(source)
    try:
        if path.suffix in (".safetensors", ".json"):
            return load_for_fine_tune(path)
        state = load_resume_state(path) if path.is_dir() else torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not {"G", "D", "G_ema"} <= state.keys():
            raise ValueError("not a MangaGAN checkpoint")
        return state
    except WeightsError as exc:
        raise RunFolderError(f"cannot start from {source}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 — torch.load raises pickle, zip and OS errors alike
        raise RunFolderError(f"cannot start from {source}: {type(exc).__name__}: {exc}") from None


# What a fine-tune keeps of the model it starts from: its networks' shapes and kinds.
_ARCHITECTURE_SETTINGS = (
    "resolution",
    "width",
    "z_dim",
    "conditioning",
    "g_conditioning",
    "g_upsample",
    "d_norm",
    "max_width_factor",
)


def _in_source_architecture(cfg: TrainingConfig, source: dict) -> TrainingConfig:
    """``cfg`` with the architecture of the model it starts from (said when that changes a setting).

    A larger ``resolution`` than the model's is kept, and the model grown to it: the
    blocks it has keep their channels, each added one at the image end halves them
    (ProGAN's growing, Karras et al. 2018, without the fade-in), so ``width`` and
    ``max_width_factor`` follow from the model's. A state saved before the architecture
    was stored keeps the settings asked for, and :func:`_warm_start` says which tensors
    do not fit them.
    """
    if "architecture" not in source:
        return cfg
    arch = Architecture.from_dict(source["architecture"]).to_dict()
    # An ``input`` G grows into a ``film`` one (FiLM starts as the identity).
    if arch["g_conditioning"] == "input":
        arch["g_conditioning"] = cfg.g_conditioning
    if cfg.resolution > arch["resolution"]:
        doublings = int(math.log2(cfg.resolution // arch["resolution"]))
        if arch["width"] % 2**doublings:
            raise RunFolderError(
                f"cannot grow {cfg.init_from} from {arch['resolution']} to {cfg.resolution} px: its width "
                f"{arch['width']} does not halve {doublings} times"
            )
        if cfg.freeze_d:
            # The Train tab asks for FreezeD with every fine-tune; growing is one it cannot foresee.
            log.warning(
                "a model grown from %d to %d px starts a new discriminator: --freeze-d %d has nothing to keep",
                arch["resolution"],
                cfg.resolution,
                cfg.freeze_d,
            )
            cfg = replace(cfg, freeze_d=0)
        arch.update(
            resolution=cfg.resolution,
            width=arch["width"] // 2**doublings,
            max_width_factor=arch["max_width_factor"] * 2**doublings,
            # D starts afresh (see _warm_start), so it is built as asked.
            conditioning=cfg.conditioning,
            d_norm=cfg.d_norm,
        )
    changed = {k: arch[k] for k in _ARCHITECTURE_SETTINGS if getattr(cfg, k) != arch[k]}
    if changed:
        log.info(
            "starting from %s: its architecture is kept (%s)",
            cfg.init_from,
            ", ".join(f"{k} {getattr(cfg, k)} → {v}" for k, v in changed.items()),
        )
    return replace(cfg, **changed)


def _warm_start(models: GanModels, cfg: TrainingConfig, source: dict, vocabulary: Vocabulary) -> dict:
    """Copy G, D and EMA G of ``source`` (:func:`_load_source`) into ``models``.

    The condition layers are laid out again for ``vocabulary`` (a tag both know keeps
    its weights, a new one starts at zero). Every other tensor of the source must fit;
    tensors only the new networks have (FiLM layers added to an ``input`` generator)
    keep their identity initialisation. A model grown to a larger resolution keeps
    its G's blocks (same names and shapes) and gets a new RGB layer; its D starts
    afresh, since each of the old D's blocks would now see another image size.
    Returns what the card records: the source, its steps and hours.
    """
    old_slots = Vocabulary.from_json(source.get("vocabulary", VOCABULARY.to_json())).slot_names()
    source_px = Architecture.from_dict(source["architecture"]).resolution if "architecture" in source else None
    grown = source_px is not None and source_px < models.g.arch.resolution
    for key, net in (("G", models.g), ("D", models.d), ("G_ema", models.g_ema)):
        if grown and key == "D":
            continue
        try:
            tensors = regrow_conditions(source[key], old_slots, vocabulary.slot_names(), cfg.z_dim)
        except ValueError as exc:
            raise RunFolderError(f"cannot start from {cfg.init_from}: its {key} {exc}") from None
        own = net.state_dict()
        misfits = [k for k, v in tensors.items() if k not in own or own[k].shape != v.shape]
        if grown:
            tensors = {k: v for k, v in tensors.items() if k not in misfits}
            misfits = [k for k in misfits if not k.startswith("to_rgb.")]
        if misfits:
            raise RunFolderError(
                f"cannot start from {cfg.init_from}: its {key} does not fit this architecture "
                f"({', '.join(misfits[:3])})"
            )
        net.load_state_dict(tensors, strict=False)
    earlier = source.get("warm_start") or {}
    log.info("starting from %s (step %s)%s", cfg.init_from, source.get("step"), " grown" if grown else "")
    record = {
        "from": str(cfg.init_from),
        "steps": int(source.get("step", 0)) + int(earlier.get("steps", 0)),
        "hours": round((float(source.get("elapsed_seconds", 0.0)) / 3600) + float(earlier.get("hours", 0.0)), 3),
    }
    if grown:
        record["grown_from_px"] = source_px
    return record


def _remove_stale_temporaries(run_dir: Path) -> None:
    """Delete temporaries a killed run left behind (a half-written checkpoint is as big as a whole one)."""
    for folder in (run_dir, run_dir / "previews"):
        for tmp in folder.glob(".*.tmp"):
            log.info("removing %s, left by an interrupted write", tmp)
            tmp.unlink(missing_ok=True)


def _train(
    cfg: TrainingConfig,
    run_dir: Path,
    state: dict | None,
    keep_current: bool,
    ranks: distributed.Distributed,
    device: torch.device,
    bf16: bool,
    description: str,
    progress: Callable[[TrainProgress], None] | None,
    should_stop: Callable[[], bool] | None,
    on_preview: Callable[[Preview], None] | None,
    faces: TrainingFaces | None,
    source: dict | None,
) -> TrainResult:
    """The loop of :func:`train` once the run folder and the processes are set up.

    Only rank 0 (the only rank in single-process training) writes files.
    """
    where = f" as rank {ranks.rank} of {ranks.world}" if ranks.active else ""
    log.info("training on %s%s%s", description, where, " with bfloat16 autocast" if bf16 else "")

    # A resumed run keeps its vocabulary; a fine-tune's "default" is its model's.
    base = Vocabulary.from_json(source["vocabulary"]) if source and "vocabulary" in source else VOCABULARY
    wanted: str | Vocabulary = cfg.vocabulary
    if state is not None:
        wanted = Vocabulary.from_json(state.get("vocabulary", VOCABULARY.to_json()))
    if faces is None and is_shard_folder(cfg.data):
        if wanted not in ("default", VOCABULARY) or base != VOCABULARY:
            raise ValueError(
                f"{cfg.data} is packed with the app's vocabulary; train on the folder of faces "
                "to use another vocabulary"
            )
        faces = ShardSet(cfg.data)  # packed by `mangagan pack`: streamed, not loaded
    elif faces is None:
        faces = load_face_folder(
            cfg.data,
            cfg.resolution,
            vocabulary=wanted,
            base=base,
            progress=((lambda done, total: progress(TrainProgress("loading", done, total))) if progress else None),
        )
    vocabulary = faces.vocabulary
    left_out = getattr(faces, "left_out_tags", {})  # shards carry no tag texts
    on_every_face = getattr(faces, "tags_on_every_face", ())
    if left_out and ranks.is_main:
        log.warning(
            "%d tag%s of the data %s not a condition of this model and will not be learned: %s%s",
            len(left_out),
            "s" if len(left_out) != 1 else "",
            "are" if len(left_out) != 1 else "is",
            VocabularyChoice(vocabulary, left_out).left_out_sentence(),
            "" if cfg.vocabulary == "auto" else " (--vocabulary auto makes the frequent ones conditions)",
        )
    if on_every_face and ranks.is_main:
        log.warning(
            "every face carries %s: a tag on every face is not a condition (the model draws it on every "
            "face); leave it off some faces to make it a checkbox",
            ", ".join(on_every_face),
        )
    if faces.resolution != cfg.resolution:
        raise ValueError(f"the data is {faces.resolution} px but the run is configured for {cfg.resolution} px")
    steps_per_epoch = len(faces) // cfg.batch
    if steps_per_epoch == 0:
        raise ValueError(f"{len(faces)} images are fewer than one batch of {cfg.batch}")

    arch = Architecture(
        cfg.resolution,
        cfg.width,
        cfg.z_dim,
        vocabulary.dim,
        cfg.conditioning,
        cfg.g_conditioning,
        cfg.g_upsample,
        cfg.d_norm,
        cfg.max_width_factor,
    )
    models = GanModels(cfg, arch, device)
    step = epoch = batch_in_epoch = 0
    elapsed_before = 0.0
    warm_start = None
    if state is not None:
        models.load(state)
        step, epoch, batch_in_epoch = int(state["step"]), int(state["epoch"]), int(state["batch_in_epoch"])
        elapsed_before = float(state.get("elapsed_seconds", 0.0))
        warm_start = state.get("warm_start")
        log.info("resuming %s at step %d (epoch %d)", run_dir, step, epoch)
        if ranks.is_main:
            _truncate_stats(run_dir / "stats.jsonl", step)
    elif source is not None:
        warm_start = _warm_start(models, cfg, source, vocabulary)
    if ranks.active:
        models.distribute(device)
    if ranks.is_main:
        atomic_write_json(run_dir / "config.json", cfg.to_dict())

    total_steps = cfg.epochs * steps_per_epoch
    if progress:
        progress(
            TrainProgress(
                "started",
                step,
                total_steps,
                epoch,
                cfg.epochs,
                detail=f"{len(faces)} faces at {cfg.resolution} px on {description}",
            )
        )
    hair_rows = len(vocabulary.group("hair_colour").values)
    fixed_z = noise(PREVIEW_COLUMNS, cfg.z_dim, cfg.seed + 7).repeat(hair_rows, 1).to(device)
    fixed_cond = hair_colour_rows(PREVIEW_COLUMNS, cfg.seed + 7, vocabulary).to(device)

    session_start = time.monotonic()
    session_steps = 0
    last_checkpoint_time = time.monotonic()
    tick_start, tick_train_time, tick_sums, tick_steps = time.monotonic(), 0.0, {}, 0
    stopped = False
    stats_path = run_dir / "stats.jsonl"
    health = HealthMonitor()
    preview_warning = None

    def checkpoint() -> Path:
        nonlocal last_checkpoint_time, keep_current
        last_checkpoint_time = time.monotonic()
        path = run_dir / CHECKPOINT
        if not ranks.is_main:
            return path
        path = save_checkpoint(
            run_dir,
            {
                "format": 1,
                "config": cfg.to_dict(),
                "architecture": arch.to_dict(),
                "vocabulary": vocabulary.to_json(),
                "data": faces.summary(),
                "step": step,
                "epoch": epoch,
                "batch_in_epoch": batch_in_epoch,
                "elapsed_seconds": elapsed_before + time.monotonic() - session_start,
                **models.state(),
                **({"warm_start": warm_start} if warm_start else {}),
            },
            keep_current=keep_current,
        )
        keep_current = True
        return path

    models.g.train()
    models.d.train()
    while epoch < cfg.epochs and not stopped:
        order, flips = epoch_order(cfg.seed, epoch, len(faces))
        while batch_in_epoch < steps_per_epoch:
            # Every rank stops at the same step, or the others would wait for it forever.
            if ranks.any(should_stop is not None and should_stop(), device):
                stopped = True
                break
            start = batch_in_epoch * cfg.batch
            global_batch = order[start : start + cfg.batch], flips[start : start + cfg.batch]
            sl = ranks.part(cfg.batch)  # this rank's share of the global batch
            t0 = time.perf_counter()
            _set_learning_rates(models, cfg, step, total_steps)
            stats = train_step(
                models,
                cfg,
                faces.batch(global_batch[0][sl], global_batch[1][sl]),
                faces,
                step,
                device,
                bf16=bf16,
                world=ranks.world,
                rank=ranks.rank,
            )
            stats = ranks.mean(stats, device)
            models.augment.observe(stats["r_t"])
            tick_train_time += time.perf_counter() - t0
            for k, v in stats.items():
                tick_sums[k] = tick_sums.get(k, 0.0) + v
            step += 1
            tick_steps += 1
            batch_in_epoch += 1
            if batch_in_epoch == steps_per_epoch:
                epoch, batch_in_epoch = epoch + 1, 0
            session_steps += 1
            if session_steps == 1 and progress:
                seconds = time.monotonic() - session_start
                progress(
                    TrainProgress(
                        "first_step",
                        step,
                        total_steps,
                        epoch,
                        cfg.epochs,
                        cfg.batch / seconds,
                        seconds * (total_steps - step),
                        {k: float(v) for k, v in stats.items()},
                    )
                )

            if step % cfg.tick_steps == 0 or step == total_steps:
                now = time.monotonic()
                means = {k: v / tick_steps for k, v in tick_sums.items()}
                ips = tick_steps * cfg.batch / max(tick_train_time, 1e-9)
                per_step = (now - session_start) / session_steps
                eta = per_step * (total_steps - step)
                record = {
                    "step": step,
                    "epoch": epoch,
                    "kimg": step * cfg.batch / 1000,
                    "img_per_sec": round(ips, 2),
                    "sec_per_tick": round(now - tick_start, 3),
                    "time": round(elapsed_before + now - session_start, 2),
                    **{k: round(v, 5) for k, v in means.items()},
                }
                warning = health.tick(step, means) or preview_warning
                preview_warning = None
                if warning:
                    record["warning"] = warning.message
                if ranks.is_main:
                    with open(stats_path, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(record) + "\n")
                if progress:
                    progress(
                        TrainProgress(
                            "training",
                            step,
                            total_steps,
                            epoch,
                            cfg.epochs,
                            ips,
                            eta,
                            means,
                            warning.message if warning else "",
                        )
                    )
                tick_start, tick_train_time, tick_sums, tick_steps = now, 0.0, {}, 0
            if step % cfg.preview_steps == 0 and ranks.is_main:
                preview = _write_preview(models, run_dir, step, fixed_z, fixed_cond)
                preview_warning = health.preview(step, preview.faces, PREVIEW_COLUMNS) or preview_warning
                if on_preview:
                    on_preview(preview)
            due_by_steps = cfg.checkpoint_steps > 0 and step % cfg.checkpoint_steps == 0
            due_by_time = time.monotonic() - last_checkpoint_time >= cfg.checkpoint_minutes * 60
            if due_by_steps or due_by_time:
                checkpoint()
            if batch_in_epoch == 0:
                break  # the epoch is complete; draw the next order

    path = checkpoint()
    if step % cfg.preview_steps != 0 and ranks.is_main:
        preview = _write_preview(models, run_dir, step, fixed_z, fixed_cond)
        if on_preview:
            on_preview(preview)
    # debug: the caller reports the end (the CLI prints it, the Train tab shows it)
    log.debug("%s at step %d of %d; checkpoint %s", "stopped" if stopped else "finished", step, total_steps, path)
    return TrainResult(run_dir, step, total_steps, epoch, stopped, path)
