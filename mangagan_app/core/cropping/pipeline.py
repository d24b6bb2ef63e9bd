"""A crop run: find images, detect in worker processes, write crops, record in the catalogue.

animeface holds the GIL for the whole detection, so the work runs in a
``ProcessPoolExecutor`` with the spawn context (fork would copy a Qt application
into the workers). Each worker reads one source, detects, writes that source's crop
files into the dataset folder and returns a :class:`SourceResult`; the calling
process alone writes the catalogue, one transaction per source.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import multiprocessing
import os
import signal
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mangagan_app.config import CropConfig
from mangagan_app.core.catalogue import CROPS_DIR, Catalogue, FaceResult, SourceJob, SourceResult, open_catalogue
from mangagan_app.core.cropping.detector import detect_faces_multiscale, to_detector_rgb
from mangagan_app.core.cropping.geometry import crop_square, cut_square, detection_scales, dhash, fit_square
from mangagan_app.core.cropping.tags import SidecarTags, face_tags, find_sidecar, parse_sidecar, read_sidecar_tags
from mangagan_app.core.files import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})

ProgressFn = Callable[[int, int, str], None]
StopFn = Callable[[], bool]


# ---- finding sources ---------------------------------------------------------------
def find_images(sources: Iterable[str | os.PathLike], *, exclude: str | os.PathLike | None = None) -> list[Path]:
    """Image files named in ``sources``: files as given, folders searched recursively.

    Folders are walked without following symlinked folders (no loops); ``exclude``
    (the dataset folder) is skipped so crops are never cropped again. A named file
    is kept whatever its suffix; in folders only image suffixes count. Missing
    paths are returned too so that the run records why they failed.
    """
    excluded = os.path.abspath(exclude) if exclude else None
    found: list[Path] = []
    for raw in sources:
        path = Path(os.path.abspath(raw))
        if not path.is_dir():
            found.append(path)
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if os.path.join(root, d) != excluded)
            found += [Path(root, f) for f in sorted(files) if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return list(dict.fromkeys(found))


# ---- one source, in a worker process -----------------------------------------------
def _worker_init(max_pixels: int) -> None:
    # Ctrl+C goes to the whole process group; only the parent decides to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_pixel_limit(max_pixels)


def _set_pixel_limit(max_pixels: int) -> None:
    # Pillow warns above the limit and refuses above twice it; refuse at the limit.
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def crop_file_name(source_id: int, idx: int) -> str:
    """Where face ``idx`` of source ``source_id`` is stored, relative to the dataset folder.

    Sharded by thousand so no folder holds more than ~1000 sources' crops.
    """
    return f"{CROPS_DIR}/{source_id // 1000:05d}/{source_id:07d}_{idx:02d}.png"


def _describe_error(exc: BaseException) -> str:
    """The reason shown to the user for a source that failed."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"image too large (decompression bomb guard): {exc}"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image Pillow can read"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return "symlink loop"
    if isinstance(exc, IsADirectoryError):
        return "is a folder"
    text = str(exc) or type(exc).__name__
    if "truncated" in text or isinstance(exc, (SyntaxError, EOFError, OSError)):
        return f"truncated or corrupt image: {text}"
    if isinstance(exc, ValueError):  # our own checks (empty, too small) say it plainly
        return text
    return f"{type(exc).__name__}: {text}"


def _load(path: str) -> tuple[bytes, Image.Image]:
    with open(path, "rb") as fh:
        data = fh.read()
    if not data:
        raise ValueError("empty file (0 bytes)")
    image = Image.open(io.BytesIO(data))
    image.load()  # decode now so a truncated file fails here, not mid-detection
    return data, image


def _sidecar_tags(path: Path) -> SidecarTags | None:
    sidecar = find_sidecar(path)
    if sidecar is None:
        return None
    try:
        return parse_sidecar(read_sidecar_tags(sidecar))
    except (OSError, ValueError) as exc:
        log.warning("ignoring tag file %s: %s", sidecar, exc)
        return None


def process_source(job: SourceJob, cfg: CropConfig, dataset_dir: str) -> SourceResult:
    """Detect and crop the faces of one source image; never raises for a bad image.

    Crop files are written (atomically) into ``dataset_dir``; the source is only read.
    """
    size = mtime = sha = width = height = None
    try:
        st = os.stat(job.path)
        # Recorded even when reading fails, so an unchanged bad file is not retried.
        size, mtime = st.st_size, st.st_mtime_ns
        data, image = _load(job.path)
        sha = hashlib.sha256(data).hexdigest()
        rgb = to_detector_rgb(image)
        width, height = rgb.size
        if min(width, height) < cfg.min_face:
            raise ValueError(f"image too small to hold a face ({width}x{height} px)")
        scales = detection_scales(
            width, height, min_face=cfg.min_face, detect_face_px=cfg.detect_face_px, pyramid_step=cfg.pyramid_step
        )
        detected = detect_faces_multiscale(rgb, scales)
    except Exception as exc:  # noqa: BLE001 - any failure of one image is that image's error row
        return SourceResult(job.source_id, job.path, size, mtime, sha, width, height, _describe_error(exc))
    sidecar = _sidecar_tags(Path(job.path))
    faces = []
    small = 0
    for face in detected:
        if max(face.box[2], face.box[3]) < cfg.min_face:
            small += 1
            continue
        square = fit_square(crop_square(face.box, margin=cfg.margin, lift=cfg.lift), width, height)
        crop = cut_square(rgb, square, cfg.size)
        name = crop_file_name(job.source_id, len(faces))
        out = Path(dataset_dir, name)
        out.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        crop.save(buffer, "PNG")
        atomic_write_bytes(out, buffer.getvalue())
        tags, origin = face_tags(sidecar, face.hair_rgb, face.eye_rgb)
        faces.append(
            FaceResult(
                idx=len(faces),
                box=face.box,
                square=square,
                likelihood=face.likelihood,
                hair_rgb=face.hair_rgb,
                eye_rgb=face.eye_rgb,
                skin_rgb=face.skin_rgb,
                crop_file=name,
                crop_size=cfg.size,
                tags=tuple(tags),
                tags_source=origin,
                dhash=dhash(crop),
            )
        )
    return SourceResult(job.source_id, job.path, size, mtime, sha, width, height, None, tuple(faces), small)


# ---- the run -----------------------------------------------------------------------
@dataclass
class CropSummary:
    """What a run did. ``errors`` counts failed sources by reason."""

    found: int = 0
    skipped: int = 0
    processed: int = 0
    faces: int = 0
    small_faces: int = 0
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    stopped: bool = False

    def lines(self) -> list[str]:
        """The summary in plain words, one fact per line."""
        out = [
            f"images found: {self.found} (already done: {self.skipped}, processed now: {self.processed})",
            f"faces cropped: {self.faces} (too small, skipped: {self.small_faces})",
            f"errors: {sum(self.errors.values())}",
        ]
        out += [f"  {n} x {reason}" for reason, n in self.errors.most_common()]
        rate = self.processed / self.seconds if self.seconds else 0.0
        out.append(f"time: {self.seconds:.1f} s ({rate:.2f} images/s)" + (" - stopped early" if self.stopped else ""))
        return out


def default_workers() -> int:
    """One worker per CPU core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _reason_key(reason: str) -> str:
    return reason.split(":", 1)[0]


def crop_sources(
    sources: Sequence[str | os.PathLike],
    dataset_dir: str | os.PathLike,
    cfg: CropConfig,
    *,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> CropSummary:
    """Crop every face in ``sources`` (files and folders) into ``dataset_dir``.

    Resumable: sources already recorded unchanged are skipped. ``progress(done,
    total, path)`` is called after each image; when ``should_stop()`` turns true
    no new image is started, the ones in flight are awaited and recorded, and the
    summary says ``stopped``. Raises ``OSError`` when the dataset folder cannot
    be created and ``sqlite3.DatabaseError`` when its catalogue is damaged.
    """
    started = time.monotonic()
    dataset_dir = Path(dataset_dir)
    summary = CropSummary()
    with Catalogue(dataset_dir) as catalogue:
        catalogue.set_meta("crop_config", json.dumps(cfg.to_dict(), sort_keys=True))
        paths = find_images(sources, exclude=dataset_dir)
        jobs = catalogue.plan(paths)
        summary.found, summary.skipped = len(paths), len(paths) - len(jobs)
        workers = cfg.workers or default_workers()
        _run_jobs(jobs, catalogue, cfg, workers, summary, progress, should_stop or (lambda: False))
    summary.seconds = time.monotonic() - started
    return summary


def _record(catalogue: Catalogue, result: SourceResult, summary: CropSummary) -> None:
    catalogue.record(result)
    summary.processed += 1
    if result.error:
        summary.errors[_reason_key(result.error)] += 1
        log.debug("%s: %s", result.path, result.error)
    summary.faces += len(result.faces)
    summary.small_faces += result.small_faces


def _run_jobs(
    jobs: list[SourceJob],
    catalogue: Catalogue,
    cfg: CropConfig,
    workers: int,
    summary: CropSummary,
    progress: ProgressFn | None,
    should_stop: StopFn,
) -> None:
    total = len(jobs)
    queue = list(reversed(jobs))
    context = multiprocessing.get_context("spawn")

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init, initargs=(cfg.max_pixels,))

    pool = new_pool()
    in_flight: dict[Future, tuple[SourceJob, ProcessPoolExecutor]] = {}
    crashes_in_a_row = 0
    try:
        while queue or in_flight:
            stopping = should_stop()
            if stopping:
                summary.stopped = True
                queue.clear()
            # Two per worker keeps every process busy without queueing the whole run.
            while queue and len(in_flight) < 2 * workers:
                job = queue.pop()
                in_flight[pool.submit(process_source, job, cfg, str(catalogue.dataset_dir))] = (job, pool)
            if not in_flight:
                break
            done, _ = wait(in_flight, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                job, job_pool = in_flight.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    # A crash inside the C detector kills its process and the pool;
                    # the images then in flight are marked (which one crashed is
                    # unknowable) and a fresh pool goes on with the rest.
                    result = SourceResult(
                        job.source_id,
                        job.path,
                        None,
                        None,
                        None,
                        None,
                        None,
                        "the detector process crashed on this image (or beside it)",
                    )
                    crashes_in_a_row += 1
                    if crashes_in_a_row > 2 * workers + 2:
                        raise RuntimeError(
                            "the detector worker processes keep dying; is the main module "
                            "importable (spawn needs an `if __name__ == '__main__'` guard)?"
                        ) from None
                    if job_pool is pool:
                        pool.shutdown(wait=False, cancel_futures=True)
                        pool = new_pool()
                else:
                    crashes_in_a_row = 0
                _record(catalogue, result, summary)
                if progress:
                    progress(summary.processed, total, job.path)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---- using the reviewed crops --------------------------------------------------------
def export_kept(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> int:
    """Copy the kept crops into ``out_dir`` as ``NNNNNNN.png`` + kohya ``NNNNNNN.txt`` tag files.

    That folder is what the trainer reads (created only when a crop is kept). Returns
    the number exported; crops whose file is missing are logged and skipped.
    ``progress(done, total, path)`` after each crop; when ``should_stop()`` turns true
    no further crop is started, so every exported image has its tag file (running it
    again redoes the whole export). Raises ``FileNotFoundError`` when ``dataset_dir``
    holds no catalogue (nothing is created then) and ``OSError`` if ``out_dir``
    cannot be written.
    """
    out = Path(out_dir)
    count = 0
    with open_catalogue(dataset_dir) as catalogue:
        total = catalogue.decision_counts()["keep"]
        if total:
            out.mkdir(parents=True, exist_ok=True)
        for done, (crop, tags) in enumerate(catalogue.kept(), 1):
            if should_stop is not None and should_stop():
                break
            if progress is not None:
                progress(done, total, str(crop))
            try:
                data = crop.read_bytes()
            except OSError as exc:
                log.warning("skipping %s: %s", crop, exc)
                continue
            stem = crop.stem
            atomic_write_bytes(out / f"{stem}.png", data)
            atomic_write_text(out / f"{stem}.txt", ", ".join(tags) + "\n")
            count += 1
    return count
