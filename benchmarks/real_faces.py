"""The old trainer, the current trainer and a plain DCGAN on real anime faces, at the same CPU budget.

    python benchmarks/real_faces.py DATA --tagger TAGGER [--minutes 30] [--sizes 30k,3k]
        [--variants old,new,new-noaug,new-nocolour,baseline] [--out FOLDER] [--old-commit 85777a9]
        [--n 2000] [--no-eval]
    python benchmarks/real_faces.py DATA --tagger TAGGER --run RUNS/long/run   # measure one longer run

DATA is the real-faces development set (its tar or extracted folder), split by
``real_faces_data.split_real_faces`` into linked folders under ``--out``: size ``30k`` trains on
its ``train`` part, ``3k`` on ``train3k``, ``1k`` and ``300`` on ``train1k`` and ``train300``; the
``measure`` part is never trained on and is what the metrics compare against. The variants:

* ``old``: ``mangagan train DATA RUN --epochs 100000 --threads 1 --seed N`` (``--train-seed``, 0) run
  from a git worktree of ``--old-commit`` (made under ``--out``);
* ``new``: the same command with this checkout's code and defaults;
* ``new-noaug``: ``new`` with ``--augment none`` (what the adaptive augmentation does);
* ``new-nocolour``: ``new`` with ``--augment-ops translation,cutout`` (what altering colours does);
* ``new-translation``: ``new`` with ``--augment-ops translation`` (what cutting out half the face does);
* ``new-resize``, ``new-nosn``: ``new`` with G doubling by resize + 3×3 conv (the default until
  commit 8d679b0; ``new-transpose`` then), or without spectral norm in D (what each costs and buys);
* ``finetune``: ``new`` started from the shipped model (``--init-from weights/…safetensors``, its
  architecture and discriminator) with D's first two blocks frozen (``--freeze-d 2``, FreezeD);
  ``finetune-free`` without freezing, ``finetune-slow`` with a tenth of the learning rate (2e-5),
  ``finetune-warm`` with the learning rates raised from zero over the first 500 steps;
* ``baseline``: ``benchmarks/dcgan_baseline.py`` (a plain unconditional DCGAN, fp32).

DATA may also be a sketchbook folder (``mangagan synth``): it splits by the same rule (size
``30k`` is then its ``train`` part, nine tenths of it), and ``--tagger
weights/tagger/tagger.safetensors`` reads it.

Each variant is its own process pinned to one core (``taskset``), two at a time on a two-core
machine, and is stopped with SIGINT (the trainers save a checkpoint and exit) when its own CPU
time (all its threads, from ``/proc/<pid>/stat``) reaches ``--minutes``, counted from its first
stats.jsonl line so that decoding the faces is not counted. The first tick's 25 steps are
therefore free for every variant.

Then each generator draws ``--n`` faces from a fixed seed (the trainers' EMA generator; conditions
drawn like training draws them), writes an 8×8 sheet of them, and
``mangagan_app.ml.evaluation.evaluate_images`` compares them with the measure faces and the
variant's training faces in the features of ``--tagger``. Prints a table per size (steps, images
per CPU-second, D(real)/D(fake) over the run, Fréchet distance, precision/recall/density/coverage,
each with its real-vs-real floor, hair colour as asked, memorisation) and writes
``results.json``.

Everything lands in ``--out/<minutes>min/<size>/<variant>/`` (run folder, log, ``training.json``,
``sheet.png``, ``evaluation.json``). It is resumable: a variant whose
``training.json`` exists is not trained again, one whose ``evaluation.json`` has the same settings
is not evaluated again; a run cut short is started afresh. Ctrl+C stops the runs in progress
(their partial runs are not used) and prints what is finished; a second Ctrl+C aborts at once.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dcgan_baseline  # siblings in benchmarks/, on the import path when this runs as a script
import numpy as np
import torch
from PIL import Image
from real_faces_data import numbered_faces, split_real_faces

from mangagan_app.core.attributes import VOCABULARY, Vocabulary
from mangagan_app.core.files import atomic_write_bytes, atomic_write_json
from mangagan_app.ml.dataset import FaceSet, load_face_folder
from mangagan_app.ml.evaluation import evaluate_images
from mangagan_app.ml.networks import Architecture, Generator
from mangagan_app.ml.sampling import image_grid, noise, to_uint8
from mangagan_app.ml.tagger import load_tagger

REPO = Path(__file__).resolve().parent.parent
SIZES = {"30k": "train", "3k": "train3k", "1k": "train1k", "300": "train300"}
SHIPPED = REPO / "weights" / "mangagan-sketchbook64.safetensors"
# The app's trainer (conditional): the old commit, this checkout's defaults, and this checkout with
# one default changed (to measure what that default does).
APP_VARIANT_FLAGS = {
    "old": [],
    "new": [],
    "new-noaug": ["--augment", "none"],
    "new-nocolour": ["--augment-ops", "translation,cutout"],
    "new-translation": ["--augment-ops", "translation"],
    "new-resize": ["--g-upsample", "resize"],
    "new-nosn": ["--d-norm", "none"],
    # Fine-tuning the shipped model (its architecture, its D's first two blocks kept: FreezeD).
    "finetune": ["--init-from", str(SHIPPED), "--freeze-d", "2"],
    "finetune-free": ["--init-from", str(SHIPPED)],
    "finetune-slow": ["--init-from", str(SHIPPED), "--freeze-d", "2", "--lr", "2e-5"],
    "finetune-warm": ["--init-from", str(SHIPPED), "--freeze-d", "2", "--lr-warmup-steps", "500"],
}
VARIANTS = (*APP_VARIANT_FLAGS, "baseline")
# Points of the run (fractions of its steps) where the D(real)/D(fake) trajectory is read, and
# the share of the run each reading averages over (one tick is too noisy to read alone).
TRAJECTORY_POINTS = (0.10, 0.25, 0.50, 1.00)
TRAJECTORY_WINDOW = 0.05
COLLAPSE_AFTER_STEP = 500  # before it, while G still draws noise, D(fake) is low in any run
POLL_SECONDS = 1.0
PROGRESS_SECONDS = 60.0
EXIT_GRACE_SECONDS = 300.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class StopRequest:
    """Ctrl+C (or SIGTERM) sets ``requested``; a second Ctrl+C raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping: the runs in progress stop and are not used (Ctrl+C again to abort)", file=sys.stderr)


@dataclass(frozen=True)
class Job:
    size: str
    variant: str
    folder: Path  # <out>/<minutes>min/<size>/<variant>
    vocabulary: str = "default"  # the current trainer's --vocabulary (the old one has none)
    train_seed: int = 0

    @property
    def name(self) -> str:
        return f"{self.size} {self.variant}"

    @property
    def run_dir(self) -> Path:
        return self.folder / "run"

    @property
    def sheet(self) -> Path:
        return self.folder / "sheet.png"


@dataclass
class Running:
    """A training process and what has been seen of it."""

    job: Job
    core: int
    proc: subprocess.Popen
    log: io.TextIOBase
    started: float = field(default_factory=time.monotonic)
    cpu_at_start: float | None = None  # CPU seconds when the first stats line was seen
    step_at_start: int = 0
    loading_seconds: float = 0.0
    cpu_used: float = 0.0
    interrupted_at: float | None = None
    last_report: float = field(default_factory=time.monotonic)


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid``: /proc/<pid>/stat sums all the threads of the process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def read_stats(run_dir: Path) -> list[dict]:
    """The complete lines of ``run_dir/stats.jsonl`` (a line being written is left out)."""
    path = run_dir / "stats.jsonl"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    return [json.loads(line) for line in lines if line.strip()]


# ---- code under test ------------------------------------------------------------------------------
def old_worktree(out: Path, commit: str) -> Path:
    """A git worktree of ``commit`` under ``out`` (made once, then reused)."""
    tree = out / f"worktree-{commit}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit], check=True)
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    if not head.stdout.startswith(commit):
        raise SystemExit(f"{tree} is at {head.stdout.strip()}, not {commit}: remove it with `git worktree remove`")
    return tree


def code_environment(variant: str, tree: Path | None) -> tuple[dict, Path]:
    """(environment, working folder) that make ``python`` import the variant's mangagan_app.

    The working folder matters: ``python -m`` puts it first on the import path.
    """
    root = tree if variant == "old" else REPO
    return {**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"}, root


def verify_code(variant: str, tree: Path | None) -> dict:
    """Which mangagan_app the variant's processes import and at which commit; raises SystemExit when
    it is not the intended one."""
    env, cwd = code_environment(variant, tree)
    probe = subprocess.run(
        [sys.executable, "-c", "import mangagan_app; print(mangagan_app.__file__)"],
        env=env,
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    imported = Path(probe.stdout.strip()).resolve()
    if not imported.is_relative_to(cwd.resolve()):
        raise SystemExit(f"{variant}: imports {imported}, not the code in {cwd}")
    describe = subprocess.run(
        ["git", "-C", str(cwd), "describe", "--always", "--dirty"], check=True, capture_output=True, text=True
    )
    return {"imports": str(imported), "commit": describe.stdout.strip()}


def command(job: Job, faces: Path) -> list[str]:
    if job.variant == "baseline":
        return [
            sys.executable,
            str(REPO / "benchmarks" / "dcgan_baseline.py"),
            str(faces),
            str(job.run_dir),
            "--threads",
            "1",
            "--seed",
            str(job.train_seed),
        ]
    # `python -m mangagan_app`, not `-m mangagan_app.cli`: cli.py has no __main__ guard and would do nothing.
    return [
        sys.executable,
        "-m",
        "mangagan_app",
        "train",
        str(faces),
        str(job.run_dir),
        # More passes than any budget here reaches: the CPU budget ends every run (1,000 passes
        # over 312 faces were only 4,000 steps, which a fine-tune made within 20 minutes).
        "--epochs",
        "100000",
        "--threads",
        "1",
        "--seed",
        str(job.train_seed),
        *APP_VARIANT_FLAGS[job.variant],
        *(["--vocabulary", job.vocabulary] if job.variant != "old" and job.vocabulary != "default" else []),
    ]


# ---- training at a CPU budget -----------------------------------------------------------------------
def start(job: Job, core: int, faces: Path, tree: Path | None) -> Running:
    if job.folder.exists():
        shutil.rmtree(job.folder)  # a run cut short earlier: start afresh
    job.folder.mkdir(parents=True, exist_ok=True)
    env, cwd = code_environment(job.variant, tree)
    log = open(job.folder / "log.txt", "w", encoding="utf-8")
    # Its own session: a Ctrl+C in the terminal reaches only this script, which decides what each run gets.
    proc = subprocess.Popen(
        ["taskset", "-c", str(core), *command(job, faces)],
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    print(f"{job.name}: started on core {core} (pid {proc.pid}), log {job.folder / 'log.txt'}", flush=True)
    return Running(job, core, proc, log)


def watch(r: Running, budget: float) -> bool:
    """Look at a running variant once: start its budget, report, stop it at the budget; True when it ended."""
    ended = r.proc.poll() is not None
    if not ended and r.interrupted_at is None:
        cpu = cpu_seconds(r.proc.pid)
        if r.cpu_at_start is None:
            stats = read_stats(r.job.run_dir)
            if stats:
                r.cpu_at_start, r.step_at_start = cpu, stats[0]["step"]
                r.loading_seconds = time.monotonic() - r.started
        else:
            r.cpu_used = cpu - r.cpu_at_start
            if r.cpu_used >= budget:
                r.proc.send_signal(signal.SIGINT)
                r.interrupted_at = time.monotonic()
        if time.monotonic() - r.last_report >= PROGRESS_SECONDS:
            report_progress(r, budget)
    elif not ended and time.monotonic() - r.interrupted_at > EXIT_GRACE_SECONDS:
        print(f"{r.job.name}: no exit {EXIT_GRACE_SECONDS:.0f} s after SIGINT; killing it", file=sys.stderr)
        r.proc.kill()
    return ended


def report_progress(r: Running, budget: float) -> None:
    r.last_report = time.monotonic()
    stats = read_stats(r.job.run_dir)
    if not stats:
        print(f"{r.job.name}: loading faces ({r.last_report - r.started:.0f} s)", flush=True)
        return
    s = stats[-1]
    print(
        f"{r.job.name}: step {s['step']} | {r.cpu_used / 60:.1f}/{budget / 60:g} CPU min | "
        f"D(real) {s['d_real']:.3f} D(fake) {s['d_fake']:.3f}",
        flush=True,
    )


def finish(r: Running, budget: float, code: dict | None) -> None:
    """Write the training record of an ended run to ``training.json``, or say why it failed."""
    r.log.close()
    checkpoint = r.job.run_dir / "checkpoint.pt"
    if r.interrupted_at is None or r.proc.returncode != 0 or not checkpoint.exists():
        tail = (r.job.folder / "log.txt").read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
        print(
            f"{r.job.name}: FAILED (exit {r.proc.returncode} before its budget); last lines of its log:\n  "
            + "\n  ".join(tail),
            file=sys.stderr,
        )
        return
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    stats = read_stats(r.job.run_dir)
    steps, batch = int(state["step"]), int(state["config"]["batch"])
    bf16 = "bfloat16 autocast" in (r.job.folder / "log.txt").read_text(encoding="utf-8", errors="replace")
    record = {
        "size": r.job.size,
        "variant": r.job.variant,
        "code": code,
        "budget_cpu_seconds": budget,
        "cpu_seconds": round(r.cpu_used, 1),
        "loading_seconds": round(r.loading_seconds, 1),
        "wall_seconds": round(r.interrupted_at - r.started - r.loading_seconds, 1),
        "steps": steps,
        "steps_before_budget": r.step_at_start,
        "batch": batch,
        "precision": "bf16" if bf16 else "fp32",
        "img_per_cpu_second": round((steps - r.step_at_start) * batch / r.cpu_used, 2),
        "trajectory": trajectory(stats),
    }
    atomic_write_json(r.job.folder / "training.json", record)
    print(f"{r.job.name}: done, {steps} steps in {r.cpu_used / 60:.1f} CPU min", flush=True)


def trajectory(stats: list[dict]) -> dict:
    """Mean D(real) and D(fake) over the ticks just before each point of :data:`TRAJECTORY_POINTS`,
    and the lowest tick mean of D(fake) after :data:`COLLAPSE_AFTER_STEP` (a discriminator that wins
    drives it to 0)."""
    last = stats[-1]["step"]
    out: dict = {"d_real": {}, "d_fake": {}}
    for point in TRAJECTORY_POINTS:
        hi, lo = point * last, (point - TRAJECTORY_WINDOW) * last
        ticks = [s for s in stats if lo < s["step"] <= hi] or [min(stats, key=lambda s: abs(s["step"] - hi))]
        for key in ("d_real", "d_fake"):
            out[key][f"{point:.0%}"] = round(float(np.mean([s[key] for s in ticks])), 4)
    late = [s for s in stats if s["step"] > COLLAPSE_AFTER_STEP]
    lowest = min(late, key=lambda s: s["d_fake"]) if late else None
    out["min_d_fake"] = {"value": lowest["d_fake"], "step": lowest["step"]} if lowest else None
    return out


def train_all(
    jobs: list[Job], parts: dict[str, Path], budget: float, tree: Path | None, codes: dict, stop: StopRequest
) -> None:
    """Train ``jobs`` at most one per core at a time, each until its CPU budget."""
    free = sorted(os.sched_getaffinity(0))[:2]
    pending = list(jobs)
    running: list[Running] = []
    try:
        while (pending and not stop.requested) or running:
            while pending and free and not stop.requested:
                job = pending.pop(0)
                running.append(start(job, free.pop(0), parts[SIZES[job.size]], tree))
            time.sleep(POLL_SECONDS)
            for r in list(running):
                if stop.requested and r.interrupted_at is None and r.proc.poll() is None:
                    r.proc.send_signal(signal.SIGINT)
                    r.interrupted_at = time.monotonic()
                if watch(r, budget):
                    running.remove(r)
                    free.append(r.core)
                    if stop.requested:
                        r.log.close()
                        print(f"{r.job.name}: stopped before its budget; not used", file=sys.stderr)
                    else:
                        finish(r, budget, codes.get(r.job.variant))
    finally:
        for r in running:  # only after a second Ctrl+C or an error here
            r.proc.kill()
            r.proc.wait()


# ---- generating and measuring ------------------------------------------------------------------------
def generate(job: Job, faces_for, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` faces (n, 64, 64, 3) uint8 from the variant's generator and the conditions asked for,
    in the app's default slots the tagger reads (None for the unconditional baseline).
    ``faces_for(vocabulary)`` gives the job's training faces labelled in ``vocabulary``."""
    batch = 250
    with torch.no_grad():
        if job.variant == "baseline":
            g = dcgan_baseline.load_generator(job.run_dir)
            z = torch.randn(n, g.z_dim, generator=torch.Generator().manual_seed(seed))
            return np.concatenate([to_uint8(g(z[i : i + batch])) for i in range(0, n, batch)]), None
        state = torch.load(job.run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
        g = Generator(Architecture.from_dict(state["architecture"]))
        g.load_state_dict(state["G_ema"])
        g.eval()
        vocabulary = Vocabulary.from_json(state["vocabulary"]) if "vocabulary" in state else VOCABULARY
        drawn = faces_for(vocabulary).sample_conditions(n, torch.Generator().manual_seed(seed))
        cond = drawn[0] if isinstance(drawn, tuple) else drawn  # newer loaders return (conditions, masks)
        z = noise(n, g.arch.z_dim, seed)
        images = [to_uint8(g(z[i : i + batch], cond[i : i + batch])) for i in range(0, n, batch)]
        slots = vocabulary.slot_names()
        default_slots = [slots.index(name) for name in VOCABULARY.slot_names()]
        return np.concatenate(images), cond.numpy()[:, default_slots]


def write_sheet(path: Path, images: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(image_grid(images[:64], 8)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def as_hwc(faces) -> np.ndarray:
    return faces.images.permute(0, 2, 3, 1).numpy()  # (N, 64, 64, 3) uint8


def _evaluated(path: Path, settings: dict) -> bool:
    return path.exists() and json.loads(path.read_text(encoding="utf-8"))["settings"] == settings


def evaluate_all(jobs: list[Job], parts: dict[str, Path], args: argparse.Namespace, stop: StopRequest) -> None:
    """A sheet for every trained job and, unless ``--no-eval``, ``evaluation.json`` where it is missing or
    was made with other settings."""
    settings = {"n": args.n, "seed": args.seed, "tagger": str(args.tagger)}
    tagger = measure = None
    loaded: dict[tuple[str, str], FaceSet] = {}

    def faces_for(size: str, vocabulary: Vocabulary) -> FaceSet:
        key = (size, json.dumps(vocabulary.to_json()))
        if key not in loaded:
            for other in [k for k in loaded if k[0] != size]:
                del loaded[other]  # one size's training faces in memory at a time
            loaded[key] = load_face_folder(parts[SIZES[size]], 64, vocabulary=vocabulary)
        return loaded[key]

    for job in jobs:
        if stop.requested:
            return
        done = job.folder / "evaluation.json"
        if not (job.folder / "training.json").exists() or (
            job.sheet.exists() and (args.no_eval or _evaluated(done, settings))
        ):
            continue
        generated, asked = generate(job, functools.partial(faces_for, job.size), args.n, args.seed)
        write_sheet(job.sheet, generated)
        if args.no_eval:
            continue
        training_faces = faces_for(job.size, VOCABULARY)  # the images are the same in any labelling
        if tagger is None:
            tagger, measure = load_tagger(args.tagger), load_face_folder(parts["measure"], 64)
        print(f"{job.name}: evaluating {args.n} faces", flush=True)
        metrics = evaluate_images(
            generated,
            real=as_hwc(measure),
            training=as_hwc(training_faces),
            tagger=tagger,
            asked=asked,
            seed=args.seed,
            real_cond=measure.cond.numpy(),  # the measure faces' tags: the tagger's ceiling for "as asked"
            real_mask=measure.mask.numpy(),
        )
        atomic_write_json(done, {"settings": settings, "metrics": metrics})


# ---- the table -----------------------------------------------------------------------------------------
def _num(value, digits: int = 2) -> str:
    return "–" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def _with_floor(metrics: dict, key: str, floor_key: str, digits: int = 2) -> str:
    if key not in metrics:
        return "–"
    return f"{_num(metrics[key], digits)} ({_num(metrics.get(floor_key), digits)})"


def _hair(metrics: dict) -> str:
    if "as_asked_hair_colour" not in metrics:
        return "–"
    return f"{_pct(metrics['as_asked_hair_colour'])} ({_pct(metrics.get('tagger_ceiling_hair_colour'))})"


def _readings(by_point: dict) -> str:
    return "/".join(_num(by_point[f"{point:.0%}"]) for point in TRAJECTORY_POINTS)  # JSON sorted the keys


def _pct(value) -> str:
    return "–" if not isinstance(value, (int, float)) else f"{100 * value:.1f}%"


def table(size: str, rows: dict[str, dict], budget_minutes: float, counts: dict[str, int]) -> str:
    header = (
        f"{'variant':<9}{'steps':>7}{'img/CPU-s':>10} {'float':>5}  {'D(real) 10/25/50/100 %':<24}"
        f"{'D(fake) 10/25/50/100 %':<24}{'min D(fake)':>16}  {'Fréchet (floor)':<18}"
        f"{'precision':<13}{'recall':<13}{'density':<13}{'coverage':<13}{'hair asked (ceiling)':>22}{'memorised':>10}"
    )
    lines = [
        f"{size}: {counts[SIZES[size]]:,} training faces, measured against {counts['measure']:,} unseen faces; "
        f"{budget_minutes:g} CPU minutes each (min D(fake): the lowest tick mean after step "
        f"{COLLAPSE_AFTER_STEP}; metrics as value (real-vs-real floor))",
        header,
    ]
    for variant, row in rows.items():
        t, m = row["training"], row.get("evaluation", {}).get("metrics", {})
        traj = t["trajectory"]
        low = traj["min_d_fake"]
        lowest = f"{low['value']:.3f} @{low['step']}" if low else "–"
        lines.append(
            f"{variant:<9}{t['steps']:>7}{t['img_per_cpu_second']:>10.1f} {t['precision']:>5}  "
            f"{_readings(traj['d_real']):<24}"
            f"{_readings(traj['d_fake']):<24}"
            f"{lowest:>16}  "
            f"{_with_floor(m, 'frechet', 'frechet_floor', 1):<18}"
            + "".join(f"{_with_floor(m, k, 'floor_' + k):<13}" for k in ("precision", "recall", "density", "coverage"))
            + f"{_hair(m):>22}{_pct(m.get('memorisation')):>10}"
        )
    return "\n".join(lines)


def measure_run(args: argparse.Namespace) -> int:
    """Sheet, D(real)/D(fake) trajectory and metrics of one finished or stopped app run (``--run``)."""
    if args.tagger is None or not args.tagger.is_file():
        raise SystemExit("--tagger must name an existing tagger .safetensors")
    run_dir = args.run.resolve()
    job = Job("30k", "new", run_dir.parent) if run_dir.name == "run" else None
    if job is None or not (run_dir / "checkpoint.pt").is_file():
        raise SystemExit(f"{run_dir}: not a run folder named run/ holding checkpoint.pt")
    parts = split_real_faces(args.data, args.out.resolve() / "faces")
    torch.set_num_threads(min(2, len(os.sched_getaffinity(0))))
    train_faces = load_face_folder(parts["train"], 64)
    generated, asked = generate(job, train_faces, args.n, args.seed)
    write_sheet(job.sheet, generated)
    measure = load_face_folder(parts["measure"], 64)
    metrics = evaluate_images(
        generated,
        real=as_hwc(measure),
        training=as_hwc(train_faces),
        tagger=load_tagger(args.tagger),
        asked=asked,
        seed=args.seed,
        real_cond=measure.cond.numpy(),
        real_mask=measure.mask.numpy(),
    )
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    record = {
        "run": str(run_dir),
        "steps": int(state["step"]),
        "trajectory": trajectory(read_stats(run_dir)),
        "settings": {"n": args.n, "seed": args.seed, "tagger": str(args.tagger)},
        "metrics": metrics,
    }
    atomic_write_json(job.folder / "evaluation.json", record)
    traj = record["trajectory"]
    print(
        f"{run_dir}: {record['steps']} steps | D(real) {_readings(traj['d_real'])} D(fake) {_readings(traj['d_fake'])}"
        f" | Fréchet {_with_floor(metrics, 'frechet', 'frechet_floor', 1)} | "
        + " ".join(
            f"{k} {_with_floor(metrics, k, 'floor_' + k)}" for k in ("precision", "recall", "density", "coverage")
        )
        + f" | hair as asked {_hair(metrics)} | memorised {_pct(metrics.get('memorisation'))}"
    )
    print(f"sheet {job.sheet}; evaluation {job.folder / 'evaluation.json'}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the development face set: its tar or the extracted folder")
    ap.add_argument("--minutes", type=float, default=30.0, help="CPU minutes per variant (30)")
    ap.add_argument(
        "--sizes", default="30k,3k", help="training sets: 30k (train part), 3k, 1k, 300 (train3k, train1k, train300)"
    )
    ap.add_argument("--variants", default="old,new,baseline", help="old, new, baseline")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("/tmp/real_faces_benchmark"),
        help="folder outside the repository for the split, runs, sheets and results",
    )
    ap.add_argument("--old-commit", default="85777a9", help="the trainer as it was before the current issue")
    ap.add_argument("--tagger", type=Path, help="tagger .safetensors trained on the dev set's train part")
    ap.add_argument("--n", type=int, default=2000, help="generated faces per variant (2000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated faces and the metrics")
    ap.add_argument(
        "--train-seed",
        type=int,
        default=0,
        help="--seed of every variant's training; another seed repeats the runs to see their spread "
        "(results under <minutes>min-seedN)",
    )
    ap.add_argument("--no-eval", action="store_true", help="train and write sheets, skip the metrics")
    ap.add_argument(
        "--vocabulary",
        default="default",
        help="--vocabulary of the current trainer's variants (auto: the data's own tags become conditions too)",
    )
    ap.add_argument(
        "--run",
        type=Path,
        help="measure this app run (trained on the train part, e.g. a longer run) instead of training variants: "
        "its sheet and evaluation go beside it",
    )
    args = ap.parse_args()
    if args.run is not None:
        return measure_run(args)
    sizes, variants = args.sizes.split(","), args.variants.split(",")
    if unknown := [s for s in sizes if s not in SIZES] + [v for v in variants if v not in VARIANTS]:
        ap.error(f"unknown sizes/variants: {', '.join(unknown)}")
    if not args.no_eval and (args.tagger is None or not args.tagger.is_file()):
        ap.error("--tagger must name an existing tagger .safetensors (or use --no-eval)")  # now, not after training

    stop = StopRequest()
    out = args.out.resolve()
    parts = split_real_faces(args.data, out / "faces")
    counts = {part: len(numbered_faces(folder)) for part, folder in parts.items()}
    home = out / (f"{args.minutes:g}min" + (f"-seed{args.train_seed}" if args.train_seed else ""))
    jobs = [
        Job(size, variant, home / size / variant, args.vocabulary, args.train_seed)
        for size in sizes
        for variant in variants
    ]
    tree = old_worktree(out, args.old_commit) if "old" in variants else None
    codes = {v: verify_code(v, tree) for v in variants if v in APP_VARIANT_FLAGS}
    for variant, code in codes.items():
        print(f"{variant}: mangagan_app from {code['imports']} ({code['commit']})")

    todo = [job for job in jobs if not (job.folder / "training.json").exists()]
    print(
        f"{len(jobs) - len(todo)} of {len(jobs)} variants already trained; {len(todo)} to train "
        f"at {args.minutes:g} CPU minutes each",
        flush=True,
    )
    torch.set_num_threads(1)  # this process only watches while the variants train
    train_all(todo, parts, args.minutes * 60, tree, codes, stop)
    torch.set_num_threads(min(2, len(os.sched_getaffinity(0))))
    evaluate_all(jobs, parts, args, stop)

    results: dict = {"minutes": args.minutes, "counts": counts, "sizes": {}}
    for job in jobs:
        if (job.folder / "training.json").exists():
            row = {"training": json.loads((job.folder / "training.json").read_text())}
            if (job.folder / "evaluation.json").exists():
                row["evaluation"] = json.loads((job.folder / "evaluation.json").read_text())
            results["sizes"].setdefault(job.size, {})[job.variant] = row
    atomic_write_json(home / "results.json", results)
    for size, rows in results["sizes"].items():
        print("\n" + table(size, rows, args.minutes, counts))
    print(f"\nresults {home / 'results.json'}; sheets: {home}/<size>/<variant>/sheet.png")
    return 130 if stop.requested else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the second Ctrl+C; the runs in progress were killed on the way out
        print("\naborted", file=sys.stderr)
        sys.exit(130)
