"""``mangagan``: the app's capabilities without a window (scripts, servers, CI).

Each subcommand is a ``_cmd_<name>(args) -> exit code`` registered in
:func:`build_parser`; heavy imports happen inside the command so that
``mangagan --version`` stays instant.

Every mistake ends in one sentence on stderr naming the file or value and what to
do, never a traceback (``-v`` logs it): exit status 2 when a value on the command
line is wrong (argparse's own errors included), 1 when a file or folder named on
it cannot be used or the work fails, 130 when stopped with Ctrl+C. A command that
fails leaves nothing behind: output folders are created when missing (with their
parents) and removed again while empty if the command fails.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mangagan_app import __version__
from mangagan_app.config import (
    AUGMENT_OPERATIONS,
    AUGMENTS,
    D_NORMS,
    G_UPSAMPLES,
    LOSSES,
    TAGGER_INPUT_SIZES,
    parse_augment_operations,
)
from mangagan_app.core.face_recipe import MAX_SEED
from mangagan_app.environment import environment_report

log = logging.getLogger(__name__)


class CommandError(Exception):
    """A mistake or failure told in one sentence; ``code`` 2 for usage, 1 for failure."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _usage(message: str) -> CommandError:
    return CommandError(message, 2)


def describe_os_error(exc: OSError) -> str:
    """``PATH: what went wrong`` in words, for any ``OSError``."""
    if exc.filename is None or not exc.strerror:
        return str(exc)
    reason = exc.strerror[:1].lower() + exc.strerror[1:]
    if isinstance(exc, FileNotFoundError):
        reason = "no such file or folder"
    elif isinstance(exc, (FileExistsError, NotADirectoryError)):
        reason = "a file is in the way where a folder is needed"
    return f"{exc.filename}: {reason}"


# ---- argument types: a wrong value is refused before anything starts -------------------
def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def _augment_operations(text: str) -> str:
    try:
        return ",".join(parse_augment_operations(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _number_type(parse, accept, rule: str):
    """An argparse type: ``parse`` the text and refuse the value unless ``accept(value)``, saying ``rule``."""

    def convert(text: str):
        value = parse(text)
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{rule}, not {text}")
        return value

    return convert


_positive_int = _number_type(_whole, lambda v: v >= 1, "must be a positive whole number")
_natural = _number_type(_whole, lambda v: v >= 0, "must be 0 or more")
_seed = _number_type(_whole, lambda v: 0 <= v <= MAX_SEED, f"a seed is a whole number from 0 to {MAX_SEED}")
_positive_float = _number_type(_finite, lambda v: v > 0, "must be more than 0")
_non_negative_float = _number_type(_finite, lambda v: v >= 0, "must be 0 or more")
_likelihood = _number_type(_finite, lambda v: 0 <= v <= 1, "a detector likelihood is between 0 and 1")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line: ``mangagan train: argument --epochs: … (see --help)``."""

    def error(self, message: str):  # type: ignore[override]
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


# ---- files named on the command line --------------------------------------------------
def _check_output_file(path: str | None) -> None:
    """Refuse an output file path that names a folder, before any work is done."""
    if path is not None and Path(path).is_dir():
        raise _usage(f"{path} is a folder; give a file name in it, e.g. {Path(path) / 'face.png'}")


def _write_output(path: str | Path, data: bytes) -> None:
    """Write a command's output file atomically, creating its folder (and parents) if missing."""
    from mangagan_app.core.files import atomic_write_bytes, new_folders

    with new_folders(Path(path).parent):
        atomic_write_bytes(path, data)


def _model_path(given: str | None) -> str:
    """The model a command uses: ``given`` (checked), or the default model in ``weights/``.

    A training run or checkpoint given in its place gets the ``export`` hint.
    """
    from mangagan_app.config import WEIGHTS_DIR
    from mangagan_app.ml.checkpoint import weights_files
    from mangagan_app.ml.generator_service import find_default_weights

    if given is None:
        found = find_default_weights(WEIGHTS_DIR) if WEIGHTS_DIR.is_dir() else None
        if found is None:
            raise CommandError(
                f"no model in {WEIGHTS_DIR}: pass a NAME.safetensors, or export a run first with "
                "`mangagan export RUN weights/NAME`"
            )
        return str(found)
    path = Path(given)
    run = path if path.is_dir() else path.parent
    if path.suffix == ".pt" or (path.is_dir() and ((run / "checkpoint.pt").exists() or (run / "config.json").exists())):
        raise CommandError(
            f"{given} is a training run, not an exported model: export it first with "
            f"`mangagan export {run} weights/NAME`, then pass weights/NAME.safetensors"
        )
    if path.is_dir():
        from mangagan_app.ml.checkpoint import models_in

        models = ", ".join(p.name for p in models_in(path)) or "none there"
        raise CommandError(f"{given} is a folder; pass one model file in it (NAME.safetensors: {models})")
    weights = weights_files(path)[0]
    if not weights.is_file():
        raise CommandError(f"{weights}: no such model file (a model is NAME.safetensors with NAME.json beside it)")
    return given


# ---- progress on stderr -----------------------------------------------------------------
class _ProgressLine:
    """Progress on stderr: rewritten in place on a terminal; in a log (not a terminal) a whole
    line per update, at most one every ``log_seconds`` besides each stage's last.

    With ``interruptible``, Ctrl+C sets ``stop`` instead of raising, so the work ends
    what is in progress and exits cleanly; a second Ctrl+C interrupts at once.
    ``close()`` ends the line and restores the previous handler.
    """

    stopping = "stopping (Ctrl+C again to abort)"
    log_seconds = 5.0

    def __init__(self, label: str, *, interruptible: bool = True):
        import signal

        self.label = label
        self.stop = False
        self.tty = sys.stderr.isatty()
        self._open = False  # a terminal line is waiting for its newline
        self._last = -math.inf
        self._signal = signal
        self._previous = signal.signal(signal.SIGINT, self._on_interrupt) if interruptible else None

    def _on_interrupt(self, signum, frame) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        self.say(f"{self.label}: {self.stopping}")

    def show(self, text: str, *, last: bool = False) -> None:
        """An update; ``last`` marks the end of a stage (always shown)."""
        now = time.monotonic()
        if self.tty and (last or now - self._last >= 0.1):
            print("\r" + text.ljust(100), end="", file=sys.stderr, flush=True)
            self._open, self._last = True, now
        elif not self.tty and (last or now - self._last >= self.log_seconds):
            print(text, file=sys.stderr, flush=True)
            self._last = now

    def say(self, text: str) -> None:
        """A line of its own that stays, on a terminal and in a log."""
        print(("\n" if self._open else "") + text, file=sys.stderr, flush=True)
        self._open = False

    def close(self) -> None:
        if self._previous is not None:
            self._signal.signal(self._signal.SIGINT, self._previous)
        if self._open:
            print(file=sys.stderr)
            self._open = False


class _SynthProgress(_ProgressLine):
    """``done/total  img/s`` for drawing jobs; Ctrl+C lets the chunks in progress finish."""

    stopping = "stopping after the images in progress (Ctrl+C again to abort)"

    def __init__(self, label: str):
        super().__init__(label)
        self.start = time.perf_counter()

    def rate(self, done: int) -> float:
        return done / max(1e-9, time.perf_counter() - self.start)

    def __call__(self, done: int, total: int) -> None:
        self.show(f"{self.label} {done}/{total}  {self.rate(done):.1f} img/s", last=done >= total)


class _StageLine(_ProgressLine):
    """Progress of a multi-stage job: ``label: stage done/total``; Ctrl+C sets ``stop``."""

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.show(f"{self.label}: {stage} {done}/{total}", last=done >= total)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from mangagan_app.core.cropping import detector_self_check

    for name, value in environment_report():
        print(f"{name:<16} {value}")
    check = detector_self_check()
    print(f"{'detector':<16} {'ok' if check.ok else 'FAILED'}: {check.message}")
    if not check.ok:
        raise CommandError("the face detector does not work; cropping cannot run.")
    return 0


def _cmd_tags(args: argparse.Namespace) -> int:
    from mangagan_app.core.attributes import IGNORED_TAGS, VOCABULARY

    vocabulary = VOCABULARY
    source = (
        "the app's default vocabulary (a model trained with --vocabulary auto adds its data's own; "
        "`mangagan tags MODEL` lists them)"
    )
    if args.weights:
        from mangagan_app.ml.checkpoint import card_vocabulary, read_card

        weights = _model_path(args.weights)
        vocabulary = card_vocabulary(read_card(weights), weights)
        own = len(vocabulary.slot_names()) - len(VOCABULARY.slot_names())
        source = f"the model {weights}" + (f" ({own} of them its data's own)" if own > 0 else "")
    rows = [
        (g.label, v, g.tag(v), ", ".join(vocabulary.aliases(g.tag(v)))) for g in vocabulary.groups for v in g.values
    ]
    widths = [max(len(r[i]) for r in rows + [("group", "value", "tag", "")]) for i in range(3)]
    print(f"{len(rows)} tags of {source}:")
    print(f"{'group':<{widths[0]}}  {'value':<{widths[1]}}  {'tag':<{widths[2]}}  also read as")
    for group, value, tag, aliases in rows:
        print(f"{group:<{widths[0]}}  {value:<{widths[1]}}  {tag:<{widths[2]}}  {aliases}".rstrip())
    exclusive = ", ".join(g.label.lower() for g in vocabulary.groups if g.exclusive)
    print(
        f"A face has one {exclusive} each and any of the other tags. Case does not matter, a space "
        f"may stand for _, and {', '.join(sorted(IGNORED_TAGS))} are ignored."
    )
    return 0


def _cmd_crop(args: argparse.Namespace) -> int:
    import sqlite3

    from mangagan_app.config import CropConfig
    from mangagan_app.core.cropping.pipeline import IMAGE_SUFFIXES, crop_sources, find_images

    try:
        cfg = CropConfig(size=args.size, margin=args.margin, min_face=args.min_face, workers=args.workers)
    except ValueError as exc:
        raise _usage(str(exc)) from None
    missing = [s for s in args.sources if not Path(s).exists()]
    if missing:
        raise CommandError(f"{', '.join(missing)}: no such file or folder; check the path (nothing was cropped)")
    if Path(args.dataset).exists() and not Path(args.dataset).is_dir():
        raise _usage(f"--dataset {args.dataset} is a file; give a folder for the crops and catalogue.sqlite")
    paths = find_images(args.sources, exclude=args.dataset)
    if not paths:
        raise CommandError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(args.sources)}; nothing was cropped"
        )
    line = _ProgressLine("crop")
    line.stopping = "stopping after the images in progress (Ctrl+C again to abort)"

    def show(done: int, total: int, path: str) -> None:
        line.show(f"[{done}/{total}] {path.rsplit('/', 1)[-1][-40:]}", last=done == total)

    try:
        summary = crop_sources(paths, args.dataset, cfg, progress=show, should_stop=lambda: line.stop)
    except sqlite3.Error as exc:  # the catalogue is damaged, or the disk is full
        raise CommandError(str(exc)) from exc
    finally:
        line.close()
    for text in summary.lines():
        print(text)
    return 130 if summary.stopped else 0


def _decision_counts_text(counts: dict[str, int]) -> str:
    return f"{counts['keep']} kept, {counts['reject']} rejected, {counts['unreviewed']} unreviewed"


def _cmd_review(args: argparse.Namespace) -> int:
    from mangagan_app.core.catalogue import open_catalogue

    keep_from = -math.inf if args.keep_all else args.keep_above
    if keep_from is not None and args.reject_below is not None and keep_from < args.reject_below:
        raise _usage(
            f"--keep-above {args.keep_above} is below --reject-below {args.reject_below}: "
            "a face between them would be kept and rejected"
        )
    with open_catalogue(args.dataset) as catalogue:
        if keep_from is None and args.reject_below is None:
            counts = catalogue.decision_counts()
            print(f"{args.dataset}: {sum(counts.values())} faces: {_decision_counts_text(counts)}")
            if counts["unreviewed"]:
                print(
                    "decide the unreviewed ones in the Dataset tab, or here with --keep-all, "
                    "--keep-above LIKELIHOOD and/or --reject-below LIKELIHOOD"
                )
            return 0
        done = catalogue.decide_unreviewed(keep_from=keep_from, reject_below=args.reject_below)
        counts = catalogue.decision_counts()
    print(
        f"kept {done['keep']} and rejected {done['reject']} unreviewed faces; {args.dataset} now has "
        f"{_decision_counts_text(counts)}"
    )
    if counts["keep"]:
        print(
            f"train on it with: mangagan train {args.dataset} RUN_DIR (or export it: mangagan review-export "
            f"{args.dataset} OUT)"
        )
    return 0


def _cmd_review_export(args: argparse.Namespace) -> int:
    from mangagan_app.core.catalogue import open_catalogue
    from mangagan_app.core.cropping.pipeline import export_kept

    with open_catalogue(args.dataset) as catalogue:
        counts = catalogue.decision_counts()
    if not counts["keep"]:
        faces = sum(counts.values())
        if not faces:
            raise CommandError(
                f"{args.dataset} holds no crops yet: crop into it with `mangagan crop SOURCES --dataset {args.dataset}`"
            )
        raise CommandError(
            f"none of the {faces} crops in {args.dataset} is kept ({_decision_counts_text(counts)}): "
            "crops must be kept before they are exported; keep them in the Dataset tab, or with "
            f"`mangagan review {args.dataset} --keep-all` (or --keep-above LIKELIHOOD)"
        )
    line = _StageLine("review-export")
    try:
        count = export_kept(
            args.dataset,
            args.out,
            progress=lambda done, total, _: line("crops", done, total),
            should_stop=lambda: line.stop,
        )
    finally:
        line.close()
    if line.stop:
        print(f"stopped early: exported {count} kept crops with tag files to {args.out}; run again to finish")
        return 130
    print(f"exported {count} kept crops with tag files to {args.out}")
    if count < counts["keep"]:
        raise CommandError(
            f"{counts['keep'] - count} kept crops were missing from {args.dataset} (see the warnings above)"
        )
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from mangagan_app.core.sketchbook.dataset import write_sketchbook

    line = _SynthProgress("synth")
    try:
        result = write_sketchbook(
            args.out,
            args.count,
            size=args.size,
            seed=args.seed,
            workers=args.workers,
            progress=line,
            should_stop=lambda: line.stop,
        )
    except ValueError as exc:
        raise _usage(str(exc)) from None
    finally:
        line.close()
    print(
        f"wrote {result.written} faces ({args.size} px) to {result.out_dir} "
        f"at {line.rate(result.written):.1f} img/s" + (" (stopped early)" if result.stopped else "")
    )
    return 130 if result.stopped else 0


def _cmd_synth_scenes(args: argparse.Namespace) -> int:
    from mangagan_app.core.sketchbook.scenes import write_scenes

    line = _SynthProgress("synth-scenes")
    try:
        result = write_scenes(
            args.out, args.count, seed=args.seed, workers=args.workers, progress=line, should_stop=lambda: line.stop
        )
    except ValueError as exc:
        raise _usage(str(exc)) from None
    finally:
        line.close()
    print(
        f"wrote {result.written} scenes and scenes.json to {result.out_dir}"
        + (" (stopped early)" if result.stopped else "")
    )
    return 130 if result.stopped else 0


def _cmd_synth_sheet(args: argparse.Namespace) -> int:
    from PIL import Image

    from mangagan_app.core.sketchbook.dataset import contact_sheet, png_bytes

    if args.colours and not 2 <= args.colours <= 256:
        raise _usage(f"--colours {args.colours}: a palette has 2 to 256 colours (0 for full colour)")
    _check_output_file(args.out)
    try:
        sheet = contact_sheet(args.seed, args.count, args.size, args.columns)
    except ValueError as exc:
        raise _usage(str(exc)) from None
    if args.colours:
        # A palette PNG is a third of the size; flat cel shading survives it unharmed.
        sheet = sheet.quantize(args.colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    _write_output(args.out, png_bytes(sheet))
    print(f"wrote {args.out} ({args.count} faces, {sheet.width}x{sheet.height})")
    return 0


def _format_eta(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{int(seconds % 60):02d}s"


def _train_progress_printer(tick_steps: int):
    """A progress callback: one status line per tick (rewritten in place on a terminal, a whole
    line each in a log), and lines that stay for the start, the first step and warnings."""
    line = _ProgressLine("train", interruptible=False)  # the train command handles Ctrl+C itself

    def show(p) -> None:
        if p.phase == "loading":
            line.show(f"loading images {p.step}/{p.total_steps}", last=p.step >= p.total_steps)
            return
        if p.phase == "started":
            epochs = f"{p.epochs} epoch{'s' * (p.epochs != 1)}"
            line.say(
                f"training {p.detail}: step {p.step} of {p.total_steps} ({epochs}); "
                f"a progress line every {tick_steps} steps"
            )
            return
        if p.phase == "first_step":
            line.say(
                f"step {p.step}/{p.total_steps} done, {p.images_per_sec:.0f} img/s so far, "
                f"ETA {_format_eta(p.eta_seconds)}"
            )
            return
        ls = p.losses
        cls = f" cls D {ls['d_cls']:.2f} G {ls['g_cls']:.2f}" if "d_cls" in ls else ""
        gp = f" gp {ls['gp']:.3f}" if "gp" in ls else ""
        if p.warning:
            line.say(f"warning: {p.warning}")
        line.show(
            f"epoch {p.epoch}/{p.epochs} step {p.step}/{p.total_steps} | {p.images_per_sec:.0f} img/s | "
            f"D {ls.get('d_adv', 0):.3f} G {ls.get('g_adv', 0):.3f}{cls}{gp} | "
            f"D(real) {ls.get('d_real', 0):.2f} D(fake) {ls.get('d_fake', 0):.2f} "
            f"aug {ls.get('aug_p', 0):.2f} | ETA {_format_eta(p.eta_seconds)}",
            last=True,
        )

    return line, show


def _training_config(args: argparse.Namespace, run_dir: Path):
    """The run's configuration: the command's settings, over the saved ones with ``--resume``."""
    import json

    from mangagan_app.config import TrainingConfig

    given = {
        k: v
        for k, v in {
            "epochs": args.epochs,
            "batch": args.batch,
            "loss": args.loss,
            "resolution": args.res,
            "width": args.width,
            "conditioning": args.conditioning,
            "seed": args.seed,
            "device": args.device,
            "preview_steps": args.preview_every,
            "checkpoint_minutes": args.checkpoint_minutes,
            "threads": args.threads,
            "precision": args.precision,
            "g_conditioning": args.g_conditioning,
            "lr_decay_steps": args.lr_decay_steps,
            "lr_warmup_steps": args.lr_warmup_steps,
            "init_from": args.init_from,
            "freeze_d": args.freeze_d,
            "vocabulary": args.vocabulary,
            "aux_weight": args.aux_weight,
            "lr_g": args.lr,
            "lr_d": args.lr,
            "augment": args.augment,
            "augment_p": args.augment_p,
            "augment_operations": args.augment_ops,
            "ada_target": args.ada_target,
            "g_upsample": args.g_upsample,
            "d_norm": args.d_norm,
        }.items()
        if v is not None
    }
    saved = {}
    if args.resume:
        config = run_dir / "config.json"
        if not run_dir.is_dir():
            raise CommandError(
                f"{run_dir}: no such run folder, so nothing to resume; check the path, or start "
                "a new run there without --resume"
            )
        try:
            saved = json.loads(config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CommandError(
                f"{run_dir} holds no training run to resume (no config.json); start one there without --resume"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(f"{config} is damaged ({exc}); the run cannot be resumed") from None
    try:
        if args.resume:
            return TrainingConfig.from_dict({**saved, "data": args.data, **given})
        return TrainingConfig(data=args.data, **given)
    except ValueError as exc:
        raise _usage(str(exc)) from None


def _cmd_train(args: argparse.Namespace) -> int:
    import signal

    from mangagan_app.ml.device import DeviceUnavailableError, choose_device
    from mangagan_app.ml.resume_state import RunFolderError
    from mangagan_app.ml.trainer import RunFinishedError, train

    run_dir = Path(args.run_dir)
    cfg = _training_config(args, run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise _usage(f"{run_dir} is a file; give a folder for the run")
    if cfg.init_from and not Path(cfg.init_from).exists():
        raise CommandError(f"--init-from {cfg.init_from}: no such run folder, checkpoint or model file")
    if cfg.vocabulary not in ("default", "auto") and not Path(cfg.vocabulary).is_file():
        raise _usage(f"--vocabulary {cfg.vocabulary}: give default, auto or an existing vocabulary file")
    try:
        choose_device(cfg.device)
    except DeviceUnavailableError as exc:
        raise _usage(f"--device {cfg.device}: {exc}; leave --device out to train on the best device there is") from None

    from mangagan_app.ml.distributed import from_environment

    # Ctrl+C (or SIGTERM) asks the loop to stop after the current step and save;
    # a second Ctrl+C aborts at once. Under torchrun a worker gets Ctrl+C twice (from
    # the terminal and forwarded by torchrun), and torchrun itself kills workers that
    # do not finish, so there the second one is not an abort.
    ranks = from_environment()
    stop_requested = False

    def request_stop(signum, frame) -> None:
        nonlocal stop_requested
        if stop_requested and signum == signal.SIGINT and not ranks.active:
            raise KeyboardInterrupt
        if not stop_requested and ranks.is_main:
            print("\nstopping after this step and saving a checkpoint (Ctrl+C again to abort)", file=sys.stderr)
        stop_requested = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    line, progress = _train_progress_printer(cfg.tick_steps)
    try:
        result = train(cfg, run_dir, resume=args.resume, progress=progress, should_stop=lambda: stop_requested)
    except RunFinishedError as exc:
        raise CommandError(f"{exc}: mangagan train {args.data} {run_dir} --resume --epochs {2 * exc.epochs}") from None
    except (RunFolderError, FileNotFoundError, NotADirectoryError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        line.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not ranks.is_main:
        return 0  # rank 0 reports for all processes
    verb = "stopped" if result.stopped else "finished"
    print(
        f"{verb} at step {result.step}/{result.total_steps}; checkpoint {result.checkpoint}"
        + (f"\nresume with: mangagan train {args.data} {run_dir} --resume" if result.stopped else "")
    )
    return 0


def _cmd_pack(args: argparse.Namespace) -> int:
    from mangagan_app.ml.shards import pack_faces

    line = _StageLine("pack")
    try:
        result = pack_faces(
            args.data,
            args.out,
            args.res,
            workers=args.workers,
            progress=lambda done, total: line("decoding faces", done, total),
            should_stop=lambda: line.stop,
        )
    except (FileNotFoundError, NotADirectoryError, FileExistsError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        line.close()
    if result.stopped:
        print(f"pack: stopped; the partial shards in {result.folder} were removed", file=sys.stderr)
        return 130
    print(
        f"packed {result.faces} faces ({result.skipped} skipped) into {result.folder}; "
        f"train with: mangagan train {result.folder} RUN_DIR"
    )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from mangagan_app.ml.checkpoint import export_run, read_card, training_steps
    from mangagan_app.ml.generator_service import store_directions
    from mangagan_app.ml.resume_state import CHECKPOINT, PREVIOUS_CHECKPOINT, RunFolderError

    run = Path(args.run_dir)
    if not run.is_dir():
        raise CommandError(f"{run}: no such run folder (a folder made by `mangagan train`)")
    if not any((run / name).exists() for name in (CHECKPOINT, PREVIOUS_CHECKPOINT)):
        raise CommandError(
            f"{run} holds no {CHECKPOINT}: not a run folder made by `mangagan train`, or its run "
            "has not saved a checkpoint yet"
        )
    if Path(args.out).is_dir():
        raise _usage(f"{args.out} is a folder; give the model a name in it, e.g. {Path(args.out) / 'NAME'}")
    try:
        weights, card = export_run(run, args.out, half=args.half)
    except RunFolderError as exc:
        raise CommandError(str(exc)) from exc
    info = read_card(weights)
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB) and {card}")
    earlier = info["training"].get("warm_start")
    print(
        f"steps {training_steps(info)}"
        + (f" ({earlier['steps']} of them in {earlier['from']})" if earlier else "")
        + f", sha256 {info['sha256']}"
    )
    line = _StageLine("export", interruptible=False)
    try:
        directions = store_directions(weights, progress=lambda done, total: line("slider directions", done, total))
    finally:
        line.close()
    print(f"stored {len(directions)} slider directions in {card}")
    return 0


def _generate_checks(args: argparse.Namespace, vocabulary) -> tuple:
    """The attributes (in the model's ``vocabulary``) and slider values asked for; raises a
    usage error for a wrong option."""
    from mangagan_app.core.attributes import ConflictingTagsError, UnknownTagsError

    try:
        attrs, _ = vocabulary.parse_tags(args.tags or "", strict=True)
    except UnknownTagsError as exc:
        hint = f"`mangagan tags {args.weights}`" if args.weights else "`mangagan tags`"
        raise _usage(f"{exc}; {hint} lists every tag of the model") from None
    except ConflictingTagsError as exc:
        raise _usage(str(exc)) from None
    try:
        sliders = tuple(_finite(v) for v in args.sliders.split(",")) if args.sliders else ()
    except argparse.ArgumentTypeError:
        raise _usage(f'--sliders takes comma-separated numbers, e.g. "1.5,0,-2", not {args.sliders!r}') from None
    named = {}
    for item in args.slider:
        name, sep, value = item.rpartition("=")
        try:
            named[name.strip().casefold()] = _finite(value)
        except argparse.ArgumentTypeError:
            sep = ""
        if not sep or not name.strip():
            raise _usage(f'--slider takes NAME=VALUE, e.g. "Eye size=1.5", not {item!r}') from None
    single_face_options = args.sliders or named or args.variety is not None or args.scale != 1 or args.smooth
    if args.hair_rows and (single_face_options or "hair_colour" in attrs.choices):
        raise _usage(
            "--hair-rows draws a sheet with every hair colour: drop the hair colour tag and the one-face options"
        )
    if single_face_options and args.n != 1:
        raise _usage("--sliders, --slider, --variety, --scale and --smooth apply to one face: add -n 1")
    _check_output_file(args.output)
    return attrs, sliders, named


def _cmd_generate(args: argparse.Namespace) -> int:
    import io

    from PIL import Image

    from mangagan_app.ml.checkpoint import card_vocabulary, load_generator, read_card
    from mangagan_app.ml.sampling import generate, hair_colour_sheet, image_grid

    weights = _model_path(args.weights)
    vocabulary = card_vocabulary(read_card(weights), weights)
    attrs, sliders, named = _generate_checks(args, vocabulary)
    if args.n == 1 and not args.hair_rows:
        return _generate_one(args, weights, attrs, sliders, named)
    generator, _ = load_generator(weights)
    if args.hair_rows:
        columns = args.columns or 8
        images = hair_colour_sheet(generator, attrs, columns, args.seed, vocabulary)
    else:
        columns = args.columns or min(args.n, 8)
        images = generate(generator, attrs, args.n, args.seed, vocabulary)
    buf = io.BytesIO()
    Image.fromarray(image_grid(images, columns)).save(buf, format="PNG")
    _write_output(args.output, buf.getvalue())
    print(f"wrote {len(images)} faces to {args.output}")
    return 0


def _generate_one(
    args: argparse.Namespace, weights: str, attrs, sliders: tuple[float, ...], named: dict[str, float]
) -> int:
    """One face with its parameters in the PNG (what the Generate tab exports)."""
    from mangagan_app.core.face_recipe import Enlargement, png_bytes
    from mangagan_app.ml.generator_service import GeneratorService, upscale

    service = GeneratorService.load(weights)
    if len(sliders) > len(service.directions):
        raise _usage(f"the model has {len(service.directions)} slider directions, {len(sliders)} values given")
    sliders = _with_named_sliders(service.directions, sliders, named)
    recipe = service.recipe(args.seed, attrs, sliders=sliders, truncation=1.0 if args.variety is None else args.variety)
    enlargement = Enlargement(args.scale, args.smooth)
    image = upscale(service.render_image(recipe), enlargement.scale, smooth=enlargement.smooth)
    _write_output(args.output, png_bytes(image, recipe, service.vocabulary, enlargement=enlargement))
    print(
        f"wrote {args.output} ({image.width}×{image.height}); restore it with: mangagan restore {args.output} "
        "-o AGAIN.png"
    )
    return 0


def _with_named_sliders(directions, sliders: tuple[float, ...], named: dict[str, float]) -> tuple[float, ...]:
    """``sliders`` with the values of ``named`` (casefolded names) set at their directions' places."""
    if not named:
        return sliders
    index = {directions.name(i).casefold(): i for i in range(len(directions)) if directions.name(i)}
    if unknown := sorted(set(named) - set(index)):
        known = (
            ", ".join(directions.name(i) for i in sorted(index.values())) or "none (this model has no named sliders)"
        )
        raise _usage(f"no slider named {', '.join(unknown)}; the model's named sliders: {known}")
    values = list(sliders) + [0.0] * (len(directions) - len(sliders))
    for name, value in named.items():
        values[index[name]] = value
    return tuple(values)


def _restored_enlargement(args: argparse.Namespace, stored, resolution: int):
    """The enlargement to restore with: the options given, else the PNG's own (for a PNG made
    before it was stored: its size over the model's, nearest neighbour)."""
    from PIL import Image

    from mangagan_app.core.face_recipe import Enlargement

    if stored is None:
        with Image.open(args.png) as im:
            scale, exact = divmod(im.width, resolution)
        stored = Enlargement(scale if exact == 0 and 1 <= scale <= 8 else 1)
    return Enlargement(
        stored.scale if args.scale is None else args.scale, stored.smooth if args.smooth is None else args.smooth
    )


def _cmd_restore(args: argparse.Namespace) -> int:
    from mangagan_app.config import WEIGHTS_DIR
    from mangagan_app.core.face_recipe import RecipeError, png_bytes, read_png_face
    from mangagan_app.ml.generator_service import GeneratorService, find_weights_by_sha256, upscale

    _check_output_file(args.output)
    try:
        recipe, stored = read_png_face(args.png)
        weights = (
            _model_path(args.weights) if args.weights else find_weights_by_sha256(WEIGHTS_DIR, recipe.model_sha256)
        )
        if weights is None:
            raise CommandError(
                f"no model in {WEIGHTS_DIR} has sha256 {recipe.model_sha256[:12]}…; "
                "pass the one that made it with --weights"
            )
        service = GeneratorService.load(weights)
        for warning in service.check(recipe, args.png):
            log.warning("%s", warning)
    except RecipeError as exc:
        raise CommandError(str(exc)) from exc
    enlargement = _restored_enlargement(args, stored, service.resolution)
    image = upscale(service.render_image(recipe), enlargement.scale, smooth=enlargement.smooth)
    _write_output(args.output, png_bytes(image, recipe, service.vocabulary, enlargement=enlargement))
    print(f"wrote {args.output} ({image.width}×{image.height}, {enlargement.describe()}) from {service.name}")
    return 0


def _service_and_faces(faces: list[str], weights: str | None):
    """The model and a recipe for each of ``faces`` (an exported PNG, or a seed of the model).

    The model is ``weights`` if given, else the one in ``weights/`` that made the first PNG,
    else the default model.
    """
    from mangagan_app.config import WEIGHTS_DIR
    from mangagan_app.core.face_recipe import RecipeError, read_png_recipe
    from mangagan_app.ml.generator_service import GeneratorService, find_weights_by_sha256

    try:
        stored = {face: read_png_recipe(face) for face in faces if not face.isdigit()}
    except RecipeError as exc:
        raise CommandError(str(exc)) from exc
    if weights is None and stored:
        made_by = next(iter(stored.values())).model_sha256
        found = find_weights_by_sha256(WEIGHTS_DIR, made_by)
        if found is None:
            raise CommandError(
                f"no model in {WEIGHTS_DIR} has sha256 {made_by[:12]}…; pass the one that made it with --weights"
            )
        weights = str(found)
    service = GeneratorService.load(_model_path(weights))
    recipes = []
    for face in faces:
        if face in stored:
            try:
                for warning in service.check(stored[face], face):
                    log.warning("%s", warning)
            except RecipeError as exc:
                raise CommandError(str(exc)) from exc
            recipes.append(stored[face])
        else:
            recipes.append(service.recipe(int(face)))
    return service, recipes


def _cmd_morph(args: argparse.Namespace) -> int:
    from mangagan_app.core.face_recipe import Enlargement
    from mangagan_app.ml.generate_session import morph_file

    gif = _output_kind(args.output) == ".gif"
    service, (a, b) = _service_and_faces([args.a, args.b], args.weights)
    enlargement = Enlargement(args.scale, args.smooth)
    _write_output(args.output, morph_file(service, a, b, args.frames, gif=gif, enlargement=enlargement))
    print(f"wrote {args.output}: {args.frames} frames from A to B ({'GIF' if gif else 'a strip'})")
    return 0


def _cmd_variations(args: argparse.Namespace) -> int:
    import io

    from PIL import Image

    from mangagan_app.core.face_history import FavouritesStore
    from mangagan_app.ml.generate_session import VARIATION_MODES, GenerateSession
    from mangagan_app.ml.sampling import image_grid

    _output_kind(args.output)
    service, (face,) = _service_and_faces([args.face], args.weights)
    session = GenerateSession(FavouritesStore(os.devnull))
    session.use_model(service, first_seed=0)
    session.push(face, "the face given")
    strength = dict((label.split()[0].lower(), value) for label, value in VARIATION_MODES)[args.mode]
    recipes = []
    while len(recipes) < args.n:
        recipes += session.new_grid(strength)
    images = service.render(recipes[: args.n])
    buf = io.BytesIO()
    Image.fromarray(image_grid(images, args.columns or min(args.n, 4))).save(buf, format="PNG")
    _write_output(args.output, buf.getvalue())
    print(f"wrote {len(images)} {args.mode} variations to {args.output}")
    return 0


def _output_kind(path: str) -> str:
    """The output's suffix (.png or .gif), checked before any work starts."""
    _check_output_file(path)
    suffix = Path(path).suffix.lower()
    if suffix not in (".png", ".gif"):
        raise _usage(f"-o {path}: write a .png (or a .gif for a morph)")
    return suffix


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json
    import shlex

    from mangagan_app.core.files import atomic_write_text, new_folders
    from mangagan_app.ml.checkpoint import WeightsError
    from mangagan_app.ml.evaluation import (
        EvaluationSettings,
        EvaluationStopped,
        evaluate,
        format_report,
        write_card_metrics,
    )
    from mangagan_app.ml.originality import index_path, save_index
    from mangagan_app.ml.tagger import TaggerError, load_tagger

    try:
        settings = EvaluationSettings(
            n=args.n,
            per_value=args.per_value,
            detect=args.detect,
            unseen=args.unseen,
            seed=args.seed,
            workers=args.workers,
            threads=args.threads,
        )
    except ValueError as exc:
        raise _usage(str(exc)) from None
    for path in (args.json, args.pairs):
        _check_output_file(path)
    args.weights = _model_path(args.weights)  # the card and index below belong to this model
    for folder, option in ((args.data, "--data"), (args.unseen_dir, "--unseen-dir")):
        if folder is not None and not Path(folder).is_dir():
            raise CommandError(f"{option} {folder}: {'not a folder' if Path(folder).exists() else 'no such folder'}")
    tagger = load_tagger(args.tagger)
    outputs = [Path(p).parent for p in (args.json, args.pairs) if p]
    line = _StageLine("evaluate")
    # The output folders are made first, so a long evaluation cannot fail at its very end.
    with new_folders(*outputs):
        try:
            result, index = evaluate(
                args.weights,
                args.data,
                settings=settings,
                tagger=tagger,
                unseen_dir=args.unseen_dir,
                pairs_png=args.pairs,
                progress=line,
                should_stop=lambda: line.stop,
            )
        except EvaluationStopped:
            return 130
        except (WeightsError, TaggerError, FileNotFoundError, NotADirectoryError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            line.close()
    print(format_report(result))
    if args.pairs:
        print(
            f"wrote {args.pairs}: the 8 generated faces nearest the training set, each beside its nearest training face"
        )
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.write_card:
        command = [
            "mangagan",
            "evaluate",
            args.weights,
            "--data",
            args.data,
            "--n",
            args.n,
            "--per-value",
            args.per_value,
            "--detect",
            args.detect,
            "--unseen",
            args.unseen,
            "--seed",
            args.seed,
        ]
        if args.unseen_dir:
            command += ["--unseen-dir", args.unseen_dir]
        write_card_metrics(args.weights, result, shlex.join(str(c) for c in command))
        print(f"stored the metrics in the model card of {args.weights}")
    if args.write_index:
        path = save_index(index, index_path(args.weights))
        print(f"wrote the training-set feature index {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _tagger_origin(card: dict) -> dict:
    """What a continued tagger started from: its checksum and training, without its own origin's details."""
    training = {k: v for k, v in card.get("training", {}).items() if k != "continued_from"}
    return {
        "sha256": card.get("sha256"),
        "training": training,
        "continued_from": card.get("training", {}).get("continued_from"),
    }


def _cmd_train_tagger(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import torch

    from mangagan_app.ml.dataset import load_face_folder
    from mangagan_app.ml.tagger import (
        AttributeTagger,
        TaggerArchitecture,
        accuracy_report,
        known_groups,
        labelled_rows,
        load_tagger,
        save_tagger,
        train_tagger,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        train = load_face_folder(args.train, args.size)
        test = load_face_folder(args.test, args.size)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    groups = known_groups(train.cond, train.mask)
    if not groups:
        raise CommandError(
            f"{args.train}: no face has a tag of the vocabulary (hair colour, hair style, eye "
            "colour or a free tag such as glasses): nothing to learn"
        )
    labelled = len(labelled_rows(train.mask, groups))
    print(
        f"learning {', '.join(groups)} from the {labelled} of {len(train)} faces that are tagged "
        "(untagged faces add nothing to a masked loss and are skipped)"
    )
    init = load_tagger(args.init).net if args.init else None
    if init is not None and init.arch.input_size != args.size:
        raise CommandError(f"{args.init}: reads {init.arch.input_size}-px faces, not --size {args.size}")
    line = _StageLine("train-tagger")
    started = time.monotonic()
    try:
        net = train_tagger(
            train.images,
            train.cond,
            mask=train.mask,
            groups=groups,
            epochs=args.epochs,
            seed=args.seed,
            init=init,
            arch=TaggerArchitecture(input_size=args.size),
            lr=args.lr,
            progress=lambda step, total, loss: line(f"loss {loss:.3f} step", step, total),
            should_stop=lambda: line.stop,
        )
    finally:
        line.close()
    minutes = (time.monotonic() - started) / 60
    tagger = AttributeTagger(net, {})
    accuracy = accuracy_report(tagger.read(test.images)[1], test.cond.numpy(), mask=test.mask.numpy(), groups=groups)
    training = {
        "train_folder": str(args.train),
        "faces": len(train),
        "labelled_faces": labelled,
        "test_folder": str(args.test),
        "test_faces": len(test),
        "test_kind": "sketchbook" if (Path(args.test) / "metadata.jsonl").is_file() else "folder",
        "epochs": args.epochs,
        "seed": args.seed,
        "minutes": round(minutes, 1),
        "lr": args.lr,
        "continued_from": _tagger_origin(load_tagger(args.init).card) if args.init else None,
        "augmentation": "flip, shift <= 3 px, 2x blur on half, Gaussian noise sigma <= 0.08",
    }
    weights, card = save_tagger(net, args.out, training=training, accuracy=accuracy, groups=groups)
    for group, value in accuracy["groups"].items():
        faces = accuracy["faces_per_group"][group]
        shown = f"{100 * value:5.1f}%" if faces else "  n/a"
        print(f"{group:<12} {shown} on {faces} unseen faces labelled with it (of {len(test)})")
    worst = sorted(accuracy["values"].items(), key=lambda kv: kv[1])[:5]
    print("weakest values: " + ", ".join(f"{t} {100 * v:.1f}%" for t, v in worst))
    print(f"wrote {weights} and {card} ({minutes:.1f} min)")
    return 0


def _cmd_train_look_reader(args: argparse.Namespace) -> int:
    import time

    import torch

    from mangagan_app.core.sketchbook.dataset import draw_look_faces
    from mangagan_app.core.sketchbook.look import LOOK_FACTORS
    from mangagan_app.ml.look_reader import r_squared, save_look_reader, train_look_reader

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.monotonic()
    line = _StageLine("train-look-reader")
    try:
        images, factors = draw_look_faces(
            args.faces,
            seed=args.seed,
            size=args.size,
            workers=args.workers,
            progress=lambda done, total: line("drawing faces", done, total),
            should_stop=lambda: line.stop,
        )
        unseen, unseen_factors = draw_look_faces(
            args.unseen,
            seed=args.seed + 1,
            size=args.size,
            workers=args.workers,
            progress=lambda done, total: line("drawing unseen faces", done, total),
            should_stop=lambda: line.stop,
        )
        if line.stop:
            raise KeyboardInterrupt
        reader = train_look_reader(
            images,
            factors,
            epochs=args.epochs,
            seed=args.seed,
            progress=lambda step, total, loss: line(f"loss {loss:.3f} step", step, total),
            should_stop=lambda: line.stop,
        )
    finally:
        line.close()
    r2 = r_squared(reader.read(unseen), unseen_factors)
    minutes = (time.monotonic() - started) / 60
    training = {
        "faces": len(images),
        "seed": args.seed,
        "size": args.size,
        "epochs": args.epochs,
        "unseen_faces": len(unseen),
        "unseen_seed": args.seed + 1,
        "minutes": round(minutes, 1),
        "augmentation": "2x blur on half, Gaussian noise sigma <= 0.08 (no flips or shifts: they change the factors)",
    }
    weights, card = save_look_reader(reader, args.out, training=training, r2=r2)
    for factor, value in zip(LOOK_FACTORS, r2, strict=True):
        print(f"{factor.name:<24} R² {value:6.3f} on {len(unseen)} unseen faces")
    print(f"wrote {weights} and {card} ({minutes:.1f} min)")
    return 0


def _cmd_name_sliders(args: argparse.Namespace) -> int:
    import torch

    from mangagan_app.ml.look_reader import LookReaderError, load_look_reader
    from mangagan_app.ml.named_sliders import store_named_sliders, table
    from mangagan_app.ml.tagger import TaggerError, load_tagger

    torch.set_num_threads(args.threads or torch.get_num_threads())
    if args.sheet:
        _check_output_file(args.sheet)
    weights = _model_path(args.weights)
    try:
        reader, tagger = load_look_reader(args.look_reader), load_tagger(args.tagger)
    except (LookReaderError, TaggerError) as exc:
        raise CommandError(str(exc)) from exc
    line = _StageLine("name-sliders")
    try:
        result = store_named_sliders(
            weights, reader, tagger, samples=args.samples, faces=args.faces, seed=args.seed, progress=line
        )
    finally:
        line.close()
    print(table(result))
    print(f"stored {len(result.kept)} named sliders in the card of {weights}")
    if args.sheet:
        _write_slider_sheet(weights, args.sheet, args.sheet_seed)
    return 0


def _cmd_fit_discriminator(args: argparse.Namespace) -> int:
    import torch

    from mangagan_app.ml.discriminator_fit import fit_discriminator

    torch.set_num_threads(args.threads or torch.get_num_threads())
    weights = _model_path(args.weights)
    line = _StageLine("fit-discriminator")

    def progress(done: int, total: int, stats: dict[str, float]) -> None:
        line.show(
            f"fit-discriminator: step {done}/{total} | D(real) {stats['d_real']:.2f} D(fake) {stats['d_fake']:.2f}",
            last=done >= total,
        )

    try:
        fitted = fit_discriminator(
            weights, args.data, args.steps, seed=args.seed, progress=progress, should_stop=lambda: line.stop
        )
    except InterruptedError as exc:
        raise CommandError(str(exc)) from None
    finally:
        line.close()
    print(
        f"wrote {fitted.path} ({fitted.steps} steps on {fitted.faces} faces; last 50 steps D(real) "
        f"{fitted.d_real:.2f}, D(fake) {fitted.d_fake:.2f}) and listed it in the card; "
        f"the model can now be fine-tuned: mangagan train DATA RUN --init-from {weights}"
    )
    return 0


def _write_slider_sheet(weights: str, sheet: str, seed: int) -> None:
    import io

    from PIL import Image

    from mangagan_app.ml.generator_service import GeneratorService
    from mangagan_app.ml.named_sliders import SLIDER_VALUES, slider_sheet

    service = GeneratorService.load(weights)
    buf = io.BytesIO()
    Image.fromarray(slider_sheet(service, service.recipe(seed))).save(buf, format="PNG")
    _write_output(sheet, buf.getvalue())
    values = ", ".join(f"{v:+g}" for v in SLIDER_VALUES)
    print(f"wrote {sheet}: one row per named slider (strongest first), columns {values}, seed {seed}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mangagan",
        description="MangaGAN Studio on the command line.",
        epilog="Exit status: 0 done, 1 a file or folder could not be used or the work failed, "
        "2 a wrong value on the command line, 130 stopped with Ctrl+C.",
    )
    parser.add_argument("--version", action="version", version=f"mangagan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    doctor = sub.add_parser("doctor", help="check versions, compute device and the face detector")
    doctor.set_defaults(func=_cmd_doctor)

    tags = sub.add_parser("tags", help="list the tags a model knows: group, value, tag spelling and aliases")
    tags.add_argument(
        "weights",
        nargs="?",
        help="NAME.safetensors (default: the vocabulary of this app, which every model it opens uses)",
    )
    tags.set_defaults(func=_cmd_tags)

    train = sub.add_parser("train", help="train the conditional GAN on a folder of faces with .txt tag files")
    train.add_argument(
        "data",
        help="folder of face images with kohya .txt tag sidecars (e.g. a sketchbook), "
        "a dataset folder (its kept crops) or a shard folder made by `mangagan pack`",
    )
    train.add_argument("run_dir", help="run folder: config.json, stats.jsonl, previews/, checkpoint.pt")
    train.add_argument("--epochs", type=_positive_int, help="passes over the data (default 40)")
    train.add_argument("--batch", type=_positive_int, help="batch size (default 64)")
    train.add_argument(
        "--loss", choices=LOSSES, help="non-saturating DCGAN (default), hinge, or DCGAN + DRAGAN penalty"
    )
    train.add_argument(
        "--augment",
        choices=AUGMENTS,
        help="augment what D sees: adaptive probability (ada, "
        "default), always --augment-p (fixed), or not at all (none)",
    )
    train.add_argument("--augment-p", type=_finite, help="augmentation probability: fixed, or where ada starts (0)")
    train.add_argument(
        "--augment-ops",
        type=_augment_operations,
        help=f"which alterations, comma-separated, of {', '.join(AUGMENT_OPERATIONS)} "
        "(default: translation,cutout; colour alters the hair and eye colour the labels name)",
    )
    train.add_argument("--ada-target", type=_finite, help="r_t = E[sign(D(real))] that ada steers towards (0.6)")
    train.add_argument(
        "--g-upsample",
        choices=G_UPSAMPLES,
        help="G doubles by transposed conv (transpose, default) or by resize + 3x3 conv (resize)",
    )
    train.add_argument("--d-norm", choices=D_NORMS, help="spectral norm in D (spectral, default) or none")
    train.add_argument("--res", type=int, choices=(32, 64, 128), help="image size (default 64)")
    train.add_argument("--width", type=_positive_int, help="network width (default 32)")
    train.add_argument(
        "--conditioning", choices=("projection", "acgan", "both"), help="how D judges the attributes (default both)"
    )
    train.add_argument(
        "--g-conditioning",
        choices=("input", "film"),
        help="how G takes the attributes: at its input, or also at every block (film)",
    )
    train.add_argument(
        "--lr-decay-steps",
        type=_natural,
        help="lower the learning rates linearly to 0 over the last N steps (default 0: constant)",
    )
    train.add_argument(
        "--lr-warmup-steps",
        type=_natural,
        help="raise the learning rates linearly from 0 over the first N steps (default 0; a fine-tune: 500)",
    )
    train.add_argument("--lr", type=_positive_float, help="learning rate of G and D (default 2e-4)")
    train.add_argument(
        "--aux-weight", type=_non_negative_float, help="weight of the attribute-classifier loss (default 1)"
    )
    train.add_argument(
        "--init-from",
        metavar="RUN_OR_MODEL",
        help="start from another run's networks or a model's .safetensors, e.g. the shipped "
        "weights/mangagan-sketchbook64.safetensors (fine-tune in its architecture; an input G grows FiLM layers)",
    )
    train.add_argument(
        "--freeze-d",
        type=_natural,
        metavar="K",
        help="with --init-from: keep D's first K blocks as they are (FreezeD; 2 suits a few hundred faces)",
    )
    train.add_argument(
        "--vocabulary",
        metavar="default|auto|FILE",
        help="the tags the model learns as conditions: default (the app's, or the --init-from model's), "
        "auto (that plus the data's tags on at least 5 faces, at most 32; meta tags like 1girl left out), "
        "or a file (.txt: extra tags one per line; .json: a vocabulary or model card)",
    )
    train.add_argument("--seed", type=_seed, help="random seed (default 0)")
    train.add_argument("--device", choices=("cuda", "mps", "cpu"), help="default: CUDA, then MPS, then CPU")
    train.add_argument("--preview-every", type=_positive_int, help="steps between preview grids (default 500)")
    train.add_argument(
        "--checkpoint-minutes",
        type=_non_negative_float,
        help="minutes between checkpoints (default 5; 0: after every step)",
    )
    train.add_argument("--threads", type=_natural, help="CPU threads (default 0: all cores)")
    train.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        help="auto (default): bfloat16 autocast where the hardware has it natively",
    )
    train.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its checkpoint")
    train.set_defaults(func=_cmd_train)

    pack = sub.add_parser("pack", help="pack faces into uint8 shards that train without loading into memory")
    pack.add_argument("data", help="folder of faces with .txt tag sidecars, or a dataset folder (kept crops)")
    pack.add_argument("out", help="new shard folder: shard_NNNNN.u8, labels.u8, manifest.json")
    pack.add_argument("--res", type=int, default=64, choices=(32, 64, 128), help="face size in pixels (64)")
    pack.add_argument("--workers", type=_positive_int, default=2, help="decoding processes (2)")
    pack.set_defaults(func=_cmd_pack)

    export = sub.add_parser("export", help="export a run's generator to NAME.safetensors + NAME.json")
    export.add_argument("run_dir", help="run folder made by `mangagan train`")
    export.add_argument("out", help="weights/NAME (the folder is created if missing)")
    export.add_argument(
        "--half", action="store_true", help="store G and D in float16: half the bytes, faces within rounding"
    )
    export.set_defaults(func=_cmd_export)

    gen = sub.add_parser(
        "generate",
        help="draw a grid of faces with the given tags; with -n 1, one face whose "
        "PNG carries its parameters (restore it with `mangagan restore`)",
    )
    gen.add_argument(
        "weights",
        nargs="?",
        help="NAME.safetensors with its NAME.json beside it (default: the default model in weights/)",
    )
    gen.add_argument("-n", type=_positive_int, default=16, help="number of faces (default 16)")
    gen.add_argument(
        "--tags", default="", help='comma-separated tags, e.g. "blue_hair,glasses" (`mangagan tags` lists them)'
    )
    gen.add_argument("--seed", type=_seed, default=0, help="the same seed gives the same faces (default 0)")
    gen.add_argument("--columns", type=_positive_int, help="grid columns (default min(n, 8))")
    gen.add_argument(
        "--hair-rows",
        action="store_true",
        help="a sample sheet instead of -n faces: one row per hair colour, each column keeping "
        "its noise and other attributes",
    )
    gen.add_argument(
        "-o", "--output", default="grid.png", help="PNG to write (default grid.png; its folder is created if missing)"
    )
    gen.add_argument("--sliders", default="", help='-n 1: slider offsets in σ, direction 1 first, e.g. "1.5,0,-2"')
    gen.add_argument(
        "--slider",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help='-n 1: a named slider\'s offset in σ, e.g. "Eye size=1.5" (repeat for more)',
    )
    gen.add_argument("--variety", type=_non_negative_float, help="-n 1: truncation factor for the noise (default 1.0)")
    gen.add_argument("--scale", type=int, default=1, choices=range(1, 9), metavar="1-8", help="-n 1: enlarge")
    gen.add_argument("--smooth", action="store_true", help="-n 1: enlarge with Lanczos instead of nearest")
    gen.set_defaults(func=_cmd_generate)

    restore = sub.add_parser("restore", help="draw a face again from the parameters in an exported PNG")
    restore.add_argument("png", help="a PNG exported by the Generate tab or `generate -n 1`")
    restore.add_argument("-o", "--output", required=True, help="PNG to write (its folder is created if missing)")
    restore.add_argument("--weights", help="NAME.safetensors (default: the model in weights/ that made it)")
    restore.add_argument(
        "--scale", type=int, choices=range(1, 9), metavar="1-8", help="enlarge (default: as the PNG was exported)"
    )
    restore.add_argument(
        "--smooth",
        action=argparse.BooleanOptionalAction,
        help="enlarge with Lanczos, or nearest with --no-smooth (default: as the PNG was exported)",
    )
    restore.set_defaults(func=_cmd_restore)

    synth = sub.add_parser("synth", help="draw sketchbook faces: PNG + tag sidecar + metadata.jsonl")
    synth.add_argument("out", help="output folder (created if missing)")
    synth.add_argument("--count", type=_positive_int, default=1000, help="number of faces (default 1000)")
    synth.add_argument("--size", type=int, default=128, help="image side in pixels, 16-1024 (default 128)")
    synth.add_argument("--seed", type=_seed, default=0, help="the same seed gives the same files (default 0)")
    synth.add_argument("--workers", type=_positive_int, default=None, help="worker processes (default: CPU count)")
    synth.set_defaults(func=_cmd_synth)

    sheet = sub.add_parser("synth-sheet", help="write a contact sheet (grid) of sketchbook faces")
    sheet.add_argument("out", help="output PNG (its folder is created if missing)")
    sheet.add_argument("--count", type=_positive_int, default=64, help="number of faces (default 64)")
    sheet.add_argument("--columns", type=_positive_int, default=8, help="faces per row (default 8)")
    sheet.add_argument("--size", type=int, default=64, help="face size in pixels, 16-1024 (default 64)")
    sheet.add_argument("--seed", type=_seed, default=0, help="sketchbook seed (faces 0..count-1 of synth)")
    sheet.add_argument(
        "--colours", type=_natural, default=0, help="palette size 2-256 for a small PNG (default 0: full colour)"
    )
    sheet.set_defaults(func=_cmd_synth_sheet)

    scenes = sub.add_parser("synth-scenes", help="draw scenes of 1-4 characters with true face boxes (scenes.json)")
    scenes.add_argument("out", help="output folder (created if missing)")
    scenes.add_argument("--count", type=_positive_int, default=50, help="number of scenes (default 50)")
    scenes.add_argument("--seed", type=_seed, default=0, help="the same seed gives the same files (default 0)")
    scenes.add_argument("--workers", type=_positive_int, default=2, help="worker processes (default 2)")
    scenes.set_defaults(func=_cmd_synth_scenes)

    crop = sub.add_parser("crop", help="crop anime faces out of illustrations into a dataset folder")
    crop.add_argument("sources", nargs="+", help="image files and folders (searched recursively); only read")
    crop.add_argument("--dataset", required=True, help="dataset folder: crops and catalogue.sqlite go here")
    crop.add_argument("--size", type=int, default=64, choices=(64, 128), help="crop size in pixels (64)")
    crop.add_argument("--margin", type=_finite, default=0.4, help="margin around the face box per side (0.4)")
    crop.add_argument("--min-face", type=_whole, default=48, help="skip faces narrower than this in the source (48)")
    crop.add_argument("--workers", type=_natural, default=0, help="detector processes (0 = one per core)")
    crop.set_defaults(func=_cmd_crop)

    evaluate = sub.add_parser(
        "evaluate",
        help="measure a model: attributes, fidelity (Fréchet, precision / recall, "
        "density / coverage), originality, detectability",
    )
    evaluate.add_argument(
        "weights",
        nargs="?",
        help="NAME.safetensors with its NAME.json beside it (default: the default model in weights/)",
    )
    evaluate.add_argument(
        "--data",
        required=True,
        help="the folder the model was trained on (a sketchbook, or faces with .txt sidecars: then pass --unseen-dir)",
    )
    evaluate.add_argument(
        "--n", type=_positive_int, default=2000, help="generated faces for fidelity/originality (2000)"
    )
    evaluate.add_argument("--per-value", type=_positive_int, default=100, help="faces per attribute value (100)")
    evaluate.add_argument("--detect", type=_positive_int, default=500, help="faces of each kind for the detector (500)")
    evaluate.add_argument("--unseen", type=_positive_int, default=2000, help="unseen real faces for calibration (2000)")
    evaluate.add_argument(
        "--unseen-dir",
        help="folder of unseen real faces, drawn like the training faces but never "
        "trained on (default for a sketchbook: its seed + 1; needed otherwise)",
    )
    evaluate.add_argument("--tagger", help="tagger .safetensors (default: the shipped one)")
    evaluate.add_argument("--seed", type=_seed, default=0)
    evaluate.add_argument("--workers", type=_positive_int, default=2, help="processes for drawing and detecting (2)")
    evaluate.add_argument("--threads", type=_natural, default=1, help="torch CPU threads (1; 0 = all cores)")
    evaluate.add_argument("--json", help="write the full report as JSON here")
    evaluate.add_argument("--pairs", help="write a PNG of the closest generated/training pairs here")
    evaluate.add_argument("--write-card", action="store_true", help="store the metrics in the model card")
    evaluate.add_argument(
        "--write-index",
        action="store_true",
        help="write the training-set feature index NAME.index.npz beside the weights",
    )
    evaluate.set_defaults(func=_cmd_evaluate)

    tagger = sub.add_parser(
        "train-tagger",
        help="train the independent attribute tagger on tagged faces "
        "(sketchbook folders, or any faces with .txt sidecars)",
    )
    tagger.add_argument(
        "train",
        help="folder to train on: a sketchbook of its own seed (not the model's), or "
        "faces with kohya .txt sidecars; untagged faces and groups no face is "
        "tagged with are skipped",
    )
    tagger.add_argument(
        "test",
        help="folder of unseen faces (another seed / never trained on) for the accuracy, "
        "measured over the faces tagged with each learnt group",
    )
    tagger.add_argument("--out", default="weights/tagger/tagger", help="weights/tagger/tagger")
    tagger.add_argument("--epochs", type=_positive_int, default=3)
    tagger.add_argument("--seed", type=_seed, default=0)
    tagger.add_argument("--threads", type=_natural, default=1, help="CPU threads (1; 0 = all cores)")
    tagger.add_argument("--lr", type=_positive_float, default=2e-3, help="peak learning rate (2e-3)")
    tagger.add_argument("--init", help="continue training this tagger .safetensors")
    tagger.add_argument(
        "--size",
        type=int,
        choices=TAGGER_INPUT_SIZES,
        default=TAGGER_INPUT_SIZES[0],
        help="px the tagger reads faces at (64; 128 for 128-px models: a 64-px downsample loses small features)",
    )
    tagger.set_defaults(func=_cmd_train_tagger)

    reader = sub.add_parser(
        "train-look-reader",
        help="train the look reader (head tilt, eye size, hair length… read from a face) on sketchbook "
        "faces it draws, and report its R² per factor on unseen ones",
    )
    reader.add_argument("--out", default="weights/look_reader/look_reader", help="weights/look_reader/look_reader")
    reader.add_argument("--faces", type=_positive_int, default=20000, help="faces to learn from (20000)")
    reader.add_argument("--unseen", type=_positive_int, default=2000, help="unseen faces for R² (2000)")
    reader.add_argument("--size", type=_positive_int, default=64, help="face size in px (64)")
    reader.add_argument("--epochs", type=_positive_int, default=8)
    reader.add_argument("--seed", type=_seed, default=7, help="sketchbook seed of its own (7; unseen: seed + 1)")
    reader.add_argument("--workers", type=_positive_int, default=1, help="processes drawing faces (1)")
    reader.add_argument("--threads", type=_natural, default=1, help="CPU threads (1; 0 = all cores)")
    reader.set_defaults(func=_cmd_train_look_reader)

    morph_cmd = sub.add_parser("morph", help="morph one face into another: a GIF or a strip of frames")
    morph_cmd.add_argument("a", help="face A: a PNG exported by MangaGAN Studio, or a seed")
    morph_cmd.add_argument("b", help="face B: a PNG or a seed")
    morph_cmd.add_argument("-o", "--output", default="morph.gif", help="morph.gif (a .png writes a strip)")
    morph_cmd.add_argument(
        "--frames", type=_number_type(_whole, lambda n: n >= 2, "a morph needs at least 2 frames"), default=24
    )
    morph_cmd.add_argument("--weights", help="the model (default: the one that made A, else the default model)")
    morph_cmd.add_argument("--scale", type=int, default=1, choices=range(1, 9), metavar="1-8", help="enlarge")
    morph_cmd.add_argument("--smooth", action="store_true", help="enlarge with Lanczos instead of nearest")
    morph_cmd.set_defaults(func=_cmd_morph)

    variations = sub.add_parser("variations", help="a grid of relatives of a face (the Generate tab's grid)")
    variations.add_argument("face", help="a PNG exported by MangaGAN Studio, or a seed")
    variations.add_argument("-o", "--output", default="variations.png", help="variations.png")
    variations.add_argument("-n", type=_positive_int, default=16, help="faces (16)")
    variations.add_argument(
        "--mode",
        choices=("similar", "cousins", "new"),
        default="similar",
        help="how related: similar faces (default), cousins, or new faces",
    )
    variations.add_argument("--columns", type=_positive_int, help="grid columns (default 4)")
    variations.add_argument("--weights", help="the model (default: the one that made the PNG, else the default)")
    variations.set_defaults(func=_cmd_variations)

    name_sliders = sub.add_parser(
        "name-sliders",
        help="find and measure sliders an artist can name (head tilt, eye size…) for a model trained on the "
        "sketchbook, and store them in its card",
    )
    name_sliders.add_argument("weights", nargs="?", help="NAME.safetensors (default: the default model in weights/)")
    name_sliders.add_argument("--look-reader", help="look reader .safetensors (default: the shipped one)")
    name_sliders.add_argument("--tagger", help="tagger .safetensors (default: the shipped one)")
    name_sliders.add_argument("--samples", type=_positive_int, default=6000, help="faces read to fit (6000)")
    name_sliders.add_argument("--faces", type=_positive_int, default=100, help="faces each slider is measured on")
    name_sliders.add_argument("--seed", type=_seed, default=0)
    name_sliders.add_argument("--sheet", help="also write a PNG: one row per named slider, -3 … +3")
    name_sliders.add_argument("--sheet-seed", type=_seed, default=42, help="the face of the sheet (seed 42)")
    name_sliders.add_argument("--threads", type=_natural, default=1, help="CPU threads (1; 0 = all cores)")
    name_sliders.set_defaults(func=_cmd_name_sliders)

    fit_d = sub.add_parser(
        "fit-discriminator",
        help="give a model exported without a discriminator one (trained against its unchanged G), "
        "so that `train --init-from` can fine-tune it",
    )
    fit_d.add_argument("weights", help="NAME.safetensors")
    fit_d.add_argument("data", help="faces like the ones the model was trained on (folder with .txt tags)")
    fit_d.add_argument("--steps", type=_positive_int, default=2000, help="D updates (2000)")
    fit_d.add_argument("--seed", type=_seed, default=0)
    fit_d.add_argument("--threads", type=_natural, default=1, help="CPU threads (1; 0 = all cores)")
    fit_d.set_defaults(func=_cmd_fit_discriminator)

    review = sub.add_parser(
        "review",
        help="show a dataset's review decisions, or decide its unreviewed crops by "
        "the detector's likelihood (the Dataset tab without the window)",
    )
    review.add_argument("dataset", help="dataset folder made by `mangagan crop`")
    keep = review.add_mutually_exclusive_group()
    keep.add_argument("--keep-all", action="store_true", help="keep every unreviewed crop")
    keep.add_argument(
        "--keep-above",
        type=_likelihood,
        metavar="LIKELIHOOD",
        help="keep the unreviewed crops of at least this likelihood (0-1)",
    )
    review.add_argument(
        "--reject-below",
        type=_likelihood,
        metavar="LIKELIHOOD",
        help="reject the unreviewed crops below this likelihood (0-1)",
    )
    review.set_defaults(func=_cmd_review)

    export = sub.add_parser("review-export", help="write the kept crops of a dataset as PNG + .txt tag files")
    export.add_argument("dataset", help="dataset folder made by `mangagan crop`")
    export.add_argument("out", help="folder to write NNNNNNN_NN.png + .txt into (the trainer reads it)")
    export.set_defaults(func=_cmd_review_export)
    return parser


class _PlainFormatter(logging.Formatter):
    """Log records as a person reads them: the message, ``warning:`` / ``error:`` before problems."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


@contextmanager
def _logging_to_stderr(verbose: bool) -> Iterator[None]:
    """Log records on stderr while a command runs (plain lines; with ``verbose`` debug records
    too, with level and logger); afterwards the logging set-up is as it was (``main`` may be
    called in a process that logs elsewhere)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s") if verbose else _PlainFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _report(command: str, message: str, code: int, exc: BaseException) -> int:
    """Say what went wrong in one line; the traceback goes to the log (shown with -v)."""
    print(f"{command}: {message}", file=sys.stderr)
    log.debug("the traceback of that error:", exc_info=exc)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with _logging_to_stderr(args.verbose):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """The command's exit status; every error becomes one sentence (see the module docstring)."""
    command = f"mangagan {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mangagan tags | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except CommandError as exc:
        return _report(command, str(exc), exc.code, exc)
    except OSError as exc:  # a path that cannot be written or read: disk full, read-only, permissions
        return _report(command, describe_os_error(exc), 1, exc)
    except (ValueError, RuntimeError) as exc:  # the app's own errors name the file and the reason
        return _report(command, str(exc), 1, exc)
    except Exception as exc:  # noqa: BLE001 - a sentence instead of a traceback; -v shows it
        return _report(command, f"unexpected {type(exc).__name__}: {exc} (run again with -v for the details)", 1, exc)


if __name__ == "__main__":  # `python -m mangagan_app.cli` works like `python -m mangagan_app`
    raise SystemExit(main())
