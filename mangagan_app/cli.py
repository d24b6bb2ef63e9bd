"""``mangagan``: the app's capabilities without a window (scripts, servers, CI).

Each subcommand is a ``_cmd_<name>(args) -> exit code`` registered in
:func:`build_parser`; heavy imports happen inside the command so that
``mangagan --version`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
from importlib import metadata

from mangagan_app import __version__
from mangagan_app.config import AUGMENTS, D_NORMS, G_UPSAMPLES, LOSSES

log = logging.getLogger(__name__)


def _package_version(*names: str) -> str:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def environment_report() -> list[tuple[str, str]]:
    """(name, version) rows shown by ``mangagan doctor`` and Help → About."""
    import PIL
    import torch

    from mangagan_app.ml.device import choose_device

    return [
        ("MangaGAN Studio", __version__),
        ("Python", platform.python_version()),
        ("torch", torch.__version__),
        ("Qt for Python", _package_version("PySide6-Essentials", "PySide6")),
        ("Pillow", PIL.__version__),
        ("animeface", _package_version("animeface")),
        ("device", choose_device().description),
    ]


def _cmd_doctor(args: argparse.Namespace) -> int:
    from mangagan_app.core.cropping import detector_self_check

    for name, value in environment_report():
        print(f"{name:<16} {value}")
    check = detector_self_check()
    print(f"{'detector':<16} {'ok' if check.ok else 'FAILED'}: {check.message}")
    if not check.ok:
        print("doctor: the face detector does not work; cropping cannot run.", file=sys.stderr)
        return 1
    return 0


def _cmd_crop(args: argparse.Namespace) -> int:
    import signal
    import sqlite3
    import time

    from mangagan_app.config import CropConfig
    from mangagan_app.core.cropping.pipeline import crop_sources

    try:
        cfg = CropConfig(size=args.size, margin=args.margin, min_face=args.min_face, workers=args.workers)
    except ValueError as exc:
        print(f"crop: {exc}", file=sys.stderr)
        return 2
    stop = {"requested": False, "at": 0.0}

    def on_interrupt(signum: int, frame: object) -> None:
        stop["requested"] = True
        print("\nstopping after the images in progress (Ctrl+C again to abort)...", file=sys.stderr)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def show(done: int, total: int, path: str) -> None:
        now = time.monotonic()
        if now - stop["at"] >= 0.2 or done == total:
            stop["at"] = now
            name = path.rsplit("/", 1)[-1][-40:]
            print(f"\r[{done}/{total}] {name:<40}", end="", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        summary = crop_sources(args.sources, args.dataset, cfg, progress=show, should_stop=lambda: stop["requested"])
    except (OSError, sqlite3.Error) as exc:  # dataset folder read-only or full, catalogue damaged
        print(f"\ncrop: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
    print(file=sys.stderr)
    for line in summary.lines():
        print(line)
    return 130 if summary.stopped else 0


def _cmd_review_export(args: argparse.Namespace) -> int:
    import signal

    from mangagan_app.core.cropping.pipeline import export_kept

    stop = {"requested": False}

    def on_interrupt(signum: int, frame: object) -> None:
        stop["requested"] = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl+C aborts at once

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        count = export_kept(args.dataset, args.out, should_stop=lambda: stop["requested"])
    finally:
        signal.signal(signal.SIGINT, previous)
    if stop["requested"]:
        print(f"stopped early: exported {count} kept crops with tag files to {args.out}; run again to finish")
        return 130
    print(f"exported {count} kept crops with tag files to {args.out}")
    return 0 if count else 1


class _InterruptibleLine:
    """A one-line progress display on stderr whose Ctrl+C sets ``stop`` instead of raising.

    The run then finishes what is in progress and exits cleanly; a second Ctrl+C
    interrupts at once. ``close()`` restores the previous handler.
    """

    stopping = "stopping (Ctrl+C again to abort)"

    def __init__(self, label: str):
        import signal

        self.label = label
        self.stop = False
        self._signal = signal
        self._previous = signal.signal(signal.SIGINT, self._on_interrupt)

    def _on_interrupt(self, signum, frame) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        print(f"\n{self.label}: {self.stopping}", file=sys.stderr)

    def close(self) -> None:
        self._signal.signal(self._signal.SIGINT, self._previous)
        print(file=sys.stderr)


class _SynthProgress(_InterruptibleLine):
    """``done/total  img/s`` for drawing jobs; Ctrl+C lets the chunks in progress finish."""

    stopping = "stopping after the images in progress (Ctrl+C again to abort)"

    def __init__(self, label: str):
        import time

        super().__init__(label)
        self._clock = time.perf_counter
        self.start = time.perf_counter()

    def rate(self, done: int) -> float:
        return done / max(1e-9, self._clock() - self.start)

    def __call__(self, done: int, total: int) -> None:
        print(f"\r{self.label} {done}/{total}  {self.rate(done):.1f} img/s", end="", file=sys.stderr, flush=True)


def _cmd_synth(args: argparse.Namespace) -> int:
    from mangagan_app.core.sketchbook.dataset import write_sketchbook

    line = _SynthProgress("synth")
    try:
        result = write_sketchbook(args.out, args.count, size=args.size, seed=args.seed, workers=args.workers,
                                  progress=line, should_stop=lambda: line.stop)
    except (ValueError, OSError) as exc:
        print(f"synth: {args.out}: {exc}", file=sys.stderr)
        return 2
    finally:
        line.close()
    print(f"wrote {result.written} faces ({args.size} px) to {result.out_dir} "
          f"at {line.rate(result.written):.1f} img/s" + (" (stopped early)" if result.stopped else ""))
    return 130 if result.stopped else 0


def _cmd_synth_scenes(args: argparse.Namespace) -> int:
    from mangagan_app.core.sketchbook.scenes import write_scenes

    line = _SynthProgress("synth-scenes")
    try:
        result = write_scenes(args.out, args.count, seed=args.seed, workers=args.workers,
                              progress=line, should_stop=lambda: line.stop)
    except (ValueError, OSError) as exc:
        print(f"synth-scenes: {args.out}: {exc}", file=sys.stderr)
        return 2
    finally:
        line.close()
    print(f"wrote {result.written} scenes and scenes.json to {result.out_dir}"
          + (" (stopped early)" if result.stopped else ""))
    return 130 if result.stopped else 0


def _cmd_synth_sheet(args: argparse.Namespace) -> int:
    from PIL import Image

    from mangagan_app.core.files import atomic_write_bytes
    from mangagan_app.core.sketchbook.dataset import contact_sheet, png_bytes

    sheet = contact_sheet(args.seed, args.count, args.size, args.columns)
    if args.colours:
        # A palette PNG is a third of the size; flat cel shading survives it unharmed.
        sheet = sheet.quantize(args.colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    atomic_write_bytes(args.out, png_bytes(sheet))
    print(f"wrote {args.out} ({args.count} faces, {sheet.width}x{sheet.height})")
    return 0


def _format_eta(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{int(seconds % 60):02d}s"


def _train_progress_printer():
    """A progress callback printing one status line (rewritten in place on a terminal)."""
    tty = sys.stderr.isatty()

    def show(p) -> None:
        if p.phase == "loading":
            line = f"loading images {p.step}/{p.total_steps}"
        else:
            ls = p.losses
            cls = f" cls D {ls['d_cls']:.2f} G {ls['g_cls']:.2f}" if "d_cls" in ls else ""
            gp = f" gp {ls['gp']:.3f}" if "gp" in ls else ""
            line = (f"epoch {p.epoch}/{p.epochs} step {p.step}/{p.total_steps} | {p.images_per_sec:.0f} img/s | "
                    f"D {ls.get('d_adv', 0):.3f} G {ls.get('g_adv', 0):.3f}{cls}{gp} | "
                    f"D(real) {ls.get('d_real', 0):.2f} D(fake) {ls.get('d_fake', 0):.2f} "
                    f"aug {ls.get('aug_p', 0):.2f} | ETA {_format_eta(p.eta_seconds)}")
        if p.phase == "training" and p.warning:
            # A line of its own that stays on screen and in a redirected log.
            print(("\n" if tty else "") + f"warning: {p.warning}", file=sys.stderr, flush=True)
        print(("\r" + line.ljust(130)) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    return show


def _cmd_train(args: argparse.Namespace) -> int:
    import json
    import signal
    from pathlib import Path

    from mangagan_app.config import TrainingConfig
    from mangagan_app.ml.trainer import RunFolderError, train

    given = {k: v for k, v in {
        "epochs": args.epochs, "batch": args.batch, "loss": args.loss, "resolution": args.res,
        "width": args.width, "conditioning": args.conditioning, "seed": args.seed, "device": args.device,
        "preview_steps": args.preview_every, "checkpoint_minutes": args.checkpoint_minutes,
        "threads": args.threads, "precision": args.precision, "g_conditioning": args.g_conditioning,
        "lr_decay_steps": args.lr_decay_steps, "init_from": args.init_from, "aux_weight": args.aux_weight,
        "lr_g": args.lr, "lr_d": args.lr, "augment": args.augment, "augment_p": args.augment_p,
        "ada_target": args.ada_target, "g_upsample": args.g_upsample, "d_norm": args.d_norm,
    }.items() if v is not None}
    run_dir = Path(args.run_dir)
    try:
        if args.resume:
            saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
            cfg = TrainingConfig.from_dict({**saved, "data": args.data, **given})
        else:
            cfg = TrainingConfig(data=args.data, **given)
    except (OSError, ValueError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2

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
    try:
        result = train(cfg, run_dir, resume=args.resume, progress=_train_progress_printer(),
                       should_stop=lambda: stop_requested)
    except (RunFolderError, FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"\ntrain: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not ranks.is_main:
        return 0  # rank 0 reports for all processes
    verb = "stopped" if result.stopped else "finished"
    print(f"\n{verb} at step {result.step}/{result.total_steps}; checkpoint {result.checkpoint}"
          + (f"\nresume with: mangagan train {args.data} {run_dir} --resume" if result.stopped else ""))
    return 0


def _cmd_pack(args: argparse.Namespace) -> int:
    from mangagan_app.ml.shards import pack_faces

    line = _StageLine("pack")
    try:
        result = pack_faces(args.data, args.out, args.res, workers=args.workers,
                            progress=lambda done, total: line("decoding faces", done, total),
                            should_stop=lambda: line.stop)
    except (FileNotFoundError, NotADirectoryError, FileExistsError, ValueError, OSError) as exc:
        line.close()
        print(f"pack: {exc}", file=sys.stderr)
        return 1
    line.close()
    if result.stopped:
        print(f"pack: stopped; the partial shards in {result.folder} were removed", file=sys.stderr)
        return 130
    print(f"packed {result.faces} faces ({result.skipped} skipped) into {result.folder}; "
          f"train with: mangagan train {result.folder} RUN_DIR")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from mangagan_app.ml.checkpoint import export_run, read_card, training_steps
    from mangagan_app.ml.trainer import RunFolderError

    try:
        weights, card = export_run(args.run_dir, args.out)
    except (RunFolderError, OSError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    info = read_card(weights)
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB) and {card}")
    earlier = info["training"].get("warm_start")
    print(f"steps {training_steps(info)}"
          + (f" ({earlier['steps']} of them in {earlier['from']})" if earlier else "")
          + f", sha256 {info['sha256']}")
    from mangagan_app.ml.generator_service import store_directions

    directions = store_directions(
        weights, progress=lambda done, total: print(f"\rslider directions: {done}/{total} samples", end="",
                                                    flush=True))
    print(f"\nstored {len(directions)} slider directions in {card}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    import io

    from PIL import Image

    from mangagan_app.core.attributes import VOCABULARY, ConflictingTagsError, UnknownTagsError
    from mangagan_app.core.files import atomic_write_bytes
    from mangagan_app.ml.checkpoint import WeightsError, load_generator
    from mangagan_app.ml.sampling import generate, hair_colour_sheet, image_grid

    try:
        attrs, _ = VOCABULARY.parse_tags(args.tags or "", strict=True)
    except (UnknownTagsError, ConflictingTagsError) as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 2
    single_face_options = args.sliders or args.variety is not None or args.scale != 1 or args.smooth
    if args.hair_rows and (single_face_options or "hair_colour" in attrs.choices):
        print("generate: --hair-rows draws a sheet with every hair colour: drop the hair colour tag "
              "and the one-face options", file=sys.stderr)
        return 2
    if single_face_options and args.n != 1:
        print("generate: --sliders, --variety, --scale and --smooth apply to one face: add -n 1", file=sys.stderr)
        return 2
    if args.n == 1:
        return _generate_one(args, attrs)
    try:
        generator, _ = load_generator(args.weights)
    except WeightsError as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 1
    if args.hair_rows:
        columns = args.columns or 8
        images = hair_colour_sheet(generator, attrs, columns, args.seed)
    else:
        columns = args.columns or min(args.n, 8)
        images = generate(generator, attrs, args.n, args.seed)
    buf = io.BytesIO()
    Image.fromarray(image_grid(images, columns)).save(buf, format="PNG")
    atomic_write_bytes(args.output, buf.getvalue())
    print(f"wrote {len(images)} faces to {args.output}")
    return 0


def _generate_one(args: argparse.Namespace, attrs) -> int:
    """One face with its parameters in the PNG (what the Generate tab exports)."""
    from mangagan_app.core.face_recipe import save_png
    from mangagan_app.ml.checkpoint import WeightsError
    from mangagan_app.ml.generator_service import GeneratorService, upscale

    try:
        sliders = tuple(float(v) for v in args.sliders.split(",")) if args.sliders else ()
    except ValueError:
        print(f"generate: --sliders takes comma-separated numbers, not {args.sliders!r}", file=sys.stderr)
        return 2
    try:
        service = GeneratorService.load(args.weights)
    except WeightsError as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 1
    if len(sliders) > len(service.directions):
        print(f"generate: the model has {len(service.directions)} slider directions, "
              f"{len(sliders)} values given", file=sys.stderr)
        return 2
    recipe = service.recipe(args.seed, attrs, sliders=sliders,
                            truncation=1.0 if args.variety is None else args.variety)
    image = upscale(service.render_image(recipe), args.scale, smooth=args.smooth)
    save_png(args.output, image, recipe, service.vocabulary)
    print(f"wrote {args.output} ({image.width}×{image.height}); restore it with: mangagan restore {args.output}")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from mangagan_app.config import WEIGHTS_DIR
    from mangagan_app.core.face_recipe import RecipeError, read_png_recipe, save_png
    from mangagan_app.ml.checkpoint import WeightsError
    from mangagan_app.ml.generator_service import GeneratorService, find_weights_by_sha256, upscale

    try:
        recipe = read_png_recipe(args.png)
        weights = args.weights or find_weights_by_sha256(WEIGHTS_DIR, recipe.model_sha256)
        if weights is None:
            print(f"restore: no model in {WEIGHTS_DIR} has sha256 {recipe.model_sha256[:12]}…; "
                  "pass the one that made it with --weights", file=sys.stderr)
            return 1
        service = GeneratorService.load(weights)
        for warning in service.check(recipe, args.png):
            print(f"restore: warning: {warning}", file=sys.stderr)
    except (RecipeError, WeightsError) as exc:
        print(f"restore: {exc}", file=sys.stderr)
        return 1
    image = upscale(service.render_image(recipe), args.scale, smooth=args.smooth)
    save_png(args.output, image, recipe, service.vocabulary)
    print(f"wrote {args.output} ({image.width}×{image.height}) from {service.name}")
    return 0


class _StageLine(_InterruptibleLine):
    """Progress of a multi-stage job on one stderr line: ``stage done/total``; Ctrl+C sets ``stop``."""

    def __call__(self, stage: str, done: int, total: int) -> None:
        # On a terminal the line is rewritten in place; in a log, one line per stage end.
        if sys.stderr.isatty():
            print(f"\r{self.label}: {stage} {done}/{total}".ljust(70), end="", file=sys.stderr, flush=True)
        elif done >= total:
            print(f"{self.label}: {stage} {done}/{total}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self._signal.signal(self._signal.SIGINT, self._previous)
        if sys.stderr.isatty():
            print(file=sys.stderr)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json
    import shlex

    from mangagan_app.core.files import atomic_write_text
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
        settings = EvaluationSettings(n=args.n, per_value=args.per_value, detect=args.detect, unseen=args.unseen,
                                      seed=args.seed, workers=args.workers, threads=args.threads)
        tagger = load_tagger(args.tagger)
    except (ValueError, TaggerError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    line = _StageLine("evaluate")
    try:
        result, index = evaluate(args.weights, args.data, settings=settings, tagger=tagger, unseen_dir=args.unseen_dir,
                                 pairs_png=args.pairs, progress=line, should_stop=lambda: line.stop)
    except EvaluationStopped:
        return 130
    except (WeightsError, TaggerError, FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"\nevaluate: {exc}", file=sys.stderr)
        return 1
    finally:
        line.close()
    print(format_report(result))
    if args.pairs:
        print(f"wrote {args.pairs}: the 8 generated faces nearest the training set, each beside its nearest "
              "training face")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.write_card:
        command = ["mangagan", "evaluate", args.weights, "--data", args.data, "--n", args.n, "--per-value",
                   args.per_value, "--detect", args.detect, "--unseen", args.unseen, "--seed", args.seed]
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
    return {"sha256": card.get("sha256"), "training": training,
            "continued_from": card.get("training", {}).get("continued_from")}


def _cmd_train_tagger(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import torch

    from mangagan_app.ml.dataset import load_face_folder
    from mangagan_app.ml.tagger import (
        TAGGER_SIZE,
        AttributeTagger,
        TaggerError,
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
        train = load_face_folder(args.train, TAGGER_SIZE)
        test = load_face_folder(args.test, TAGGER_SIZE)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"train-tagger: {exc}", file=sys.stderr)
        return 1
    groups = known_groups(train.cond, train.mask)
    if not groups:
        print(f"train-tagger: {args.train}: no face has a tag of the vocabulary (hair colour, hair style, eye "
              "colour or a free tag such as glasses): nothing to learn", file=sys.stderr)
        return 1
    labelled = len(labelled_rows(train.mask, groups))
    print(f"learning {', '.join(groups)} from the {labelled} of {len(train)} faces that are tagged "
          "(untagged faces add nothing to a masked loss and are skipped)")
    init = None
    if args.init:
        try:
            init = load_tagger(args.init).net
        except TaggerError as exc:
            print(f"train-tagger: {exc}", file=sys.stderr)
            return 1
    line = _StageLine("train-tagger")
    started = time.monotonic()
    try:
        net = train_tagger(train.images, train.cond, mask=train.mask, groups=groups, epochs=args.epochs,
                           seed=args.seed, init=init, lr=args.lr,
                           progress=lambda step, total, loss: line(f"loss {loss:.3f} step", step, total),
                           should_stop=lambda: line.stop)
    finally:
        line.close()
    minutes = (time.monotonic() - started) / 60
    tagger = AttributeTagger(net, {})
    accuracy = accuracy_report(tagger.read(test.images)[1], test.cond.numpy(), mask=test.mask.numpy(),
                               groups=groups)
    training = {"train_folder": str(args.train), "faces": len(train), "labelled_faces": labelled,
                "test_folder": str(args.test), "test_faces": len(test),
                "test_kind": "sketchbook" if (Path(args.test) / "metadata.jsonl").is_file() else "folder",
                "epochs": args.epochs, "seed": args.seed, "minutes": round(minutes, 1),
                "lr": args.lr, "continued_from": _tagger_origin(load_tagger(args.init).card) if args.init else None,
                "augmentation": "flip, shift <= 3 px, 2x blur on half, Gaussian noise sigma <= 0.08"}
    weights, card = save_tagger(net, args.out, training=training, accuracy=accuracy, groups=groups)
    for group, value in accuracy["groups"].items():
        faces = accuracy["faces_per_group"][group]
        shown = f"{100 * value:5.1f}%" if faces else "  n/a"
        print(f"{group:<12} {shown} on {faces} unseen faces labelled with it (of {len(test)})")
    worst = sorted(accuracy["values"].items(), key=lambda kv: kv[1])[:5]
    print("weakest values: " + ", ".join(f"{t} {100 * v:.1f}%" for t, v in worst))
    print(f"wrote {weights} and {card} ({minutes:.1f} min)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mangagan", description="MangaGAN Studio on the command line.")
    parser.add_argument("--version", action="version", version=f"mangagan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    doctor = sub.add_parser("doctor", help="check versions, compute device and the face detector")
    doctor.set_defaults(func=_cmd_doctor)

    train = sub.add_parser("train", help="train the conditional GAN on a folder of faces with .txt tag files")
    train.add_argument("data", help="folder of face images with kohya .txt tag sidecars (e.g. a sketchbook), "
                                    "a dataset folder (its kept crops) or a shard folder made by `mangagan pack`")
    train.add_argument("run_dir", help="run folder: config.json, stats.jsonl, previews/, checkpoint.pt")
    train.add_argument("--epochs", type=int, help="passes over the data (default 40)")
    train.add_argument("--batch", type=int, help="batch size (default 64)")
    train.add_argument("--loss", choices=LOSSES, help="non-saturating DCGAN (default), hinge, or DCGAN + "
                       "DRAGAN penalty")
    train.add_argument("--augment", choices=AUGMENTS, help="augment what D sees: adaptive probability (ada, "
                       "default), always --augment-p (fixed), or not at all (none)")
    train.add_argument("--augment-p", type=float, help="augmentation probability: fixed, or where ada starts (0)")
    train.add_argument("--ada-target", type=float, help="r_t = E[sign(D(real))] that ada steers towards (0.6)")
    train.add_argument("--g-upsample", choices=G_UPSAMPLES, help="G doubles by resize + 3x3 conv (resize, "
                       "default) or transposed conv (the old G)")
    train.add_argument("--d-norm", choices=D_NORMS, help="spectral norm in D (spectral, default) or none")
    train.add_argument("--res", type=int, choices=(32, 64, 128), help="image size (default 64)")
    train.add_argument("--width", type=int, help="network width (default 32)")
    train.add_argument("--conditioning", choices=("projection", "acgan", "both"),
                       help="how D judges the attributes (default both)")
    train.add_argument("--g-conditioning", choices=("input", "film"),
                       help="how G takes the attributes: at its input, or also at every block (film)")
    train.add_argument("--lr-decay-steps", type=int, help="lower the learning rates linearly to 0 over the "
                                                          "last N steps (default 0: constant)")
    train.add_argument("--lr", type=float, help="learning rate of G and D (default 2e-4)")
    train.add_argument("--aux-weight", type=float, help="weight of the attribute-classifier loss (default 1)")
    train.add_argument("--init-from", metavar="RUN_OR_CHECKPOINT",
                       help="start from another run's networks (fine-tune; an input G grows FiLM layers)")
    train.add_argument("--seed", type=int, help="random seed (default 0)")
    train.add_argument("--device", choices=("cuda", "mps", "cpu"), help="default: CUDA, then MPS, then CPU")
    train.add_argument("--preview-every", type=int, help="steps between preview grids (default 500)")
    train.add_argument("--checkpoint-minutes", type=float, help="minutes between checkpoints (default 5)")
    train.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    train.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                       help="auto (default): bfloat16 autocast where the hardware has it natively")
    train.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its checkpoint")
    train.set_defaults(func=_cmd_train)

    pack = sub.add_parser("pack", help="pack faces into uint8 shards that train without loading into memory")
    pack.add_argument("data", help="folder of faces with .txt tag sidecars, or a dataset folder (kept crops)")
    pack.add_argument("out", help="new shard folder: shard_NNNNN.u8, labels.npy, manifest.json")
    pack.add_argument("--res", type=int, default=64, choices=(32, 64, 128), help="face size in pixels (64)")
    pack.add_argument("--workers", type=int, default=2, help="decoding processes (2)")
    pack.set_defaults(func=_cmd_pack)

    export = sub.add_parser("export", help="export a run's generator to NAME.safetensors + NAME.json")
    export.add_argument("run_dir")
    export.add_argument("out", help="weights/NAME")
    export.set_defaults(func=_cmd_export)

    gen = sub.add_parser("generate", help="draw a grid of faces with the given tags; with -n 1, one face whose "
                                          "PNG carries its parameters (restore it with `mangagan restore`)")
    gen.add_argument("weights", help="NAME.safetensors (its NAME.json must sit beside it)")
    gen.add_argument("-n", type=int, default=16, help="number of faces (default 16)")
    gen.add_argument("--tags", default="", help='comma-separated tags, e.g. "blue_hair,glasses"')
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--columns", type=int, help="grid columns (default min(n, 8))")
    gen.add_argument("--hair-rows", action="store_true",
                     help="a sample sheet instead of -n faces: one row per hair colour, each column keeping "
                          "its noise and other attributes")
    gen.add_argument("-o", "--output", default="grid.png", help="PNG to write (default grid.png)")
    gen.add_argument("--sliders", default="", help='-n 1: slider offsets in σ, direction 1 first, e.g. "1.5,0,-2"')
    gen.add_argument("--variety", type=float, help="-n 1: truncation factor for the noise (default 1.0)")
    gen.add_argument("--scale", type=int, default=1, choices=range(1, 9), metavar="1-8", help="-n 1: enlarge")
    gen.add_argument("--smooth", action="store_true", help="-n 1: enlarge with Lanczos instead of nearest")
    gen.set_defaults(func=_cmd_generate)

    restore = sub.add_parser("restore", help="draw a face again from the parameters in an exported PNG")
    restore.add_argument("png", help="a PNG exported by the Generate tab or `generate -n 1`")
    restore.add_argument("-o", "--output", required=True, help="PNG to write")
    restore.add_argument("--weights", help="NAME.safetensors (default: the model in weights/ that made it)")
    restore.add_argument("--scale", type=int, default=1, choices=range(1, 9), metavar="1-8", help="enlarge")
    restore.add_argument("--smooth", action="store_true", help="enlarge with Lanczos instead of nearest")
    restore.set_defaults(func=_cmd_restore)

    synth = sub.add_parser("synth", help="draw sketchbook faces: PNG + tag sidecar + metadata.jsonl")
    synth.add_argument("out", help="output folder (created if missing)")
    synth.add_argument("--count", type=int, default=1000, help="number of faces (default 1000)")
    synth.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    synth.add_argument("--seed", type=int, default=0, help="the same seed gives the same files (default 0)")
    synth.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    synth.set_defaults(func=_cmd_synth)

    sheet = sub.add_parser("synth-sheet", help="write a contact sheet (grid) of sketchbook faces")
    sheet.add_argument("out", help="output PNG")
    sheet.add_argument("--count", type=int, default=64, help="number of faces (default 64)")
    sheet.add_argument("--columns", type=int, default=8, help="faces per row (default 8)")
    sheet.add_argument("--size", type=int, default=64, help="face size in pixels (default 64)")
    sheet.add_argument("--seed", type=int, default=0, help="sketchbook seed (faces 0..count-1 of synth)")
    sheet.add_argument("--colours", type=int, default=0, help="palette size for a small PNG (default: full colour)")
    sheet.set_defaults(func=_cmd_synth_sheet)

    scenes = sub.add_parser("synth-scenes", help="draw scenes of 1-4 characters with true face boxes (scenes.json)")
    scenes.add_argument("out", help="output folder (created if missing)")
    scenes.add_argument("--count", type=int, default=50, help="number of scenes (default 50)")
    scenes.add_argument("--seed", type=int, default=0, help="the same seed gives the same files (default 0)")
    scenes.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    scenes.set_defaults(func=_cmd_synth_scenes)

    crop = sub.add_parser("crop", help="crop anime faces out of illustrations into a dataset folder")
    crop.add_argument("sources", nargs="+", help="image files and folders (searched recursively); only read")
    crop.add_argument("--dataset", required=True, help="dataset folder: crops and catalogue.sqlite go here")
    crop.add_argument("--size", type=int, default=64, choices=(64, 128), help="crop size in pixels (64)")
    crop.add_argument("--margin", type=float, default=0.4, help="margin around the face box per side (0.4)")
    crop.add_argument("--min-face", type=int, default=48, help="skip faces narrower than this in the source (48)")
    crop.add_argument("--workers", type=int, default=0, help="detector processes (0 = one per core)")
    crop.set_defaults(func=_cmd_crop)

    evaluate = sub.add_parser("evaluate", help="measure a model: attributes, fidelity (Fréchet, precision / recall, "
                                               "density / coverage), originality, detectability")
    evaluate.add_argument("weights", help="NAME.safetensors (its NAME.json must sit beside it)")
    evaluate.add_argument("--data", required=True, help="the folder the model was trained on (a sketchbook, or "
                                                        "faces with .txt sidecars: then pass --unseen-dir)")
    evaluate.add_argument("--n", type=int, default=2000, help="generated faces for fidelity/originality (2000)")
    evaluate.add_argument("--per-value", type=int, default=100, help="faces per attribute value (100)")
    evaluate.add_argument("--detect", type=int, default=500, help="faces of each kind for the detector (500)")
    evaluate.add_argument("--unseen", type=int, default=2000, help="unseen real faces for calibration (2000)")
    evaluate.add_argument("--unseen-dir", help="folder of unseen real faces, drawn like the training faces but never "
                                               "trained on (default for a sketchbook: its seed + 1; needed otherwise)")
    evaluate.add_argument("--tagger", help="tagger .safetensors (default: the shipped one)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--workers", type=int, default=2, help="processes for drawing and detecting (2)")
    evaluate.add_argument("--threads", type=int, default=1, help="torch CPU threads (1; 0 = all cores)")
    evaluate.add_argument("--json", help="write the full report as JSON here")
    evaluate.add_argument("--pairs", help="write a PNG of the closest generated/training pairs here")
    evaluate.add_argument("--write-card", action="store_true", help="store the metrics in the model card")
    evaluate.add_argument("--write-index", action="store_true",
                          help="write the training-set feature index NAME.index.npz beside the weights")
    evaluate.set_defaults(func=_cmd_evaluate)

    tagger = sub.add_parser("train-tagger", help="train the independent attribute tagger on tagged faces "
                                                 "(sketchbook folders, or any faces with .txt sidecars)")
    tagger.add_argument("train", help="folder to train on: a sketchbook of its own seed (not the model's), or "
                                      "faces with kohya .txt sidecars; untagged faces and groups no face is "
                                      "tagged with are skipped")
    tagger.add_argument("test", help="folder of unseen faces (another seed / never trained on) for the accuracy, "
                                     "measured over the faces tagged with each learnt group")
    tagger.add_argument("--out", default="weights/tagger/tagger", help="weights/tagger/tagger")
    tagger.add_argument("--epochs", type=int, default=3)
    tagger.add_argument("--seed", type=int, default=0)
    tagger.add_argument("--threads", type=int, default=1, help="CPU threads (1)")
    tagger.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (2e-3)")
    tagger.add_argument("--init", help="continue training this tagger .safetensors")
    tagger.set_defaults(func=_cmd_train_tagger)

    export = sub.add_parser("review-export", help="write the kept crops of a dataset as PNG + .txt tag files")
    export.add_argument("dataset", help="dataset folder made by `mangagan crop`")
    export.add_argument("out", help="folder to write NNNNNNN_NN.png + .txt into (the trainer reads it)")
    export.set_defaults(func=_cmd_review_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
