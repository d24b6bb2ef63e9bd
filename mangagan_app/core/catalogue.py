"""The dataset catalogue: one SQLite database (WAL) in the dataset folder.

It records every source image (path, size, mtime, hash, status, error), every face
cropped from it (box, crop square, likelihood, detector colours, crop file, tags)
and the review decision on each face. A source's faces and its ``done`` status are
written in one transaction, so a run killed at any moment leaves either the whole
result of an image or none of it; the next run redoes the pending images.

Crop files live under ``<dataset>/crops/``; the user's source images are only read.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DB_NAME = "catalogue.sqlite"
CROPS_DIR = "crops"
DECISIONS = ("unreviewed", "keep", "reject")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER,
    mtime_ns INTEGER,
    sha256 TEXT,
    width INTEGER,
    height INTEGER,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'error')),
    error TEXT,
    small_faces INTEGER NOT NULL DEFAULT 0,
    processed_at REAL
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
    crop_x INTEGER NOT NULL, crop_y INTEGER NOT NULL, crop_side INTEGER NOT NULL,
    likelihood REAL NOT NULL,
    hair_rgb TEXT NOT NULL, eye_rgb TEXT NOT NULL, skin_rgb TEXT NOT NULL,
    crop_file TEXT NOT NULL,
    crop_size INTEGER NOT NULL,
    tags TEXT NOT NULL,
    tags_source TEXT NOT NULL,
    dhash INTEGER NOT NULL,
    dhash_hi INTEGER NOT NULL,
    dhash_lo INTEGER NOT NULL,
    duplicate_of INTEGER REFERENCES faces(id) ON DELETE SET NULL,
    decision TEXT NOT NULL DEFAULT 'unreviewed' CHECK (decision IN ('unreviewed', 'keep', 'reject')),
    decided_at REAL,
    UNIQUE (source_id, idx)
);
CREATE INDEX IF NOT EXISTS faces_decision_likelihood ON faces (decision, likelihood);
CREATE INDEX IF NOT EXISTS faces_likelihood ON faces (likelihood);
CREATE INDEX IF NOT EXISTS faces_dhash_hi ON faces (dhash_hi);
CREATE INDEX IF NOT EXISTS faces_dhash_lo ON faces (dhash_lo);
CREATE INDEX IF NOT EXISTS sources_status ON sources (status);
"""


@dataclass(frozen=True)
class SourceJob:
    """A source image that needs (re)processing."""

    source_id: int
    path: str


@dataclass(frozen=True)
class FaceResult:
    """One cropped face as a worker reports it (boxes in source pixels)."""

    idx: int
    box: tuple[int, int, int, int]
    square: tuple[int, int, int, int]
    likelihood: float
    hair_rgb: tuple[int, int, int]
    eye_rgb: tuple[int, int, int]
    skin_rgb: tuple[int, int, int]
    crop_file: str  # relative to the dataset folder
    crop_size: int
    tags: tuple[str, ...]
    tags_source: str
    dhash: int


@dataclass(frozen=True)
class SourceResult:
    """The outcome of one source image: its faces, or the reason it failed."""

    source_id: int
    path: str
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    width: int | None
    height: int | None
    error: str | None
    faces: tuple[FaceResult, ...] = ()
    small_faces: int = 0


@dataclass(frozen=True)
class FaceRecord:
    """A face as the review grid shows it."""

    id: int
    source_id: int
    source_path: str
    box: tuple[int, int, int, int]
    square: tuple[int, int, int, int]
    likelihood: float
    crop_file: str
    tags: tuple[str, ...]
    tags_source: str
    decision: str
    dhash: int
    duplicate_of: int | None  # an earlier face with a near-identical crop


_MASK64 = (1 << 64) - 1


def _halves(dhash: int) -> tuple[int, int]:
    """The top and bottom 32 bits of a (signed) 64-bit hash."""
    unsigned = dhash & _MASK64
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def _rgb_text(rgb: Iterable[int]) -> str:
    return ",".join(str(int(v)) for v in rgb)


class Catalogue:
    """The catalogue of one dataset folder; created on first open.

    One instance per thread (SQLite connections are not shared across threads);
    WAL lets the review grid read while a crop run writes. Raises ``OSError``
    naming the folder when it cannot be created or written (read-only disk, no
    permission) and ``sqlite3.DatabaseError`` when the file is not a catalogue.
    """

    def __init__(self, dataset_dir: str | os.PathLike):
        self.dataset_dir = Path(dataset_dir)
        self.dataset_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(self.dataset_dir, os.W_OK):
            # SQLite would only say "unable to open database file"; WAL needs to write beside the file.
            raise PermissionError(
                errno.EACCES,
                "the dataset folder is read-only; crops and the catalogue are "
                "written there, so choose a writable folder",
                str(self.dataset_dir),
            )
        self.path = self.dataset_dir / DB_NAME
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL under WAL: a committed transaction survives a killed process
        # (only a power cut may lose the last ones), at a fraction of FULL's fsyncs.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    # ---- lifecycle -----------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    @property
    def crops_dir(self) -> Path:
        return self.dataset_dir / CROPS_DIR

    def integrity(self) -> str:
        """SQLite's own consistency check: ``"ok"`` or the first problem found."""
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]

    # ---- meta ----------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ---- sources -------------------------------------------------------------------
    def plan(self, paths: Iterable[str | os.PathLike]) -> list[SourceJob]:
        """Register ``paths`` and return the ones that need work.

        A source already ``done`` or ``error`` with the same size and mtime, or
        one that cannot be read now, is skipped; a changed one loses its old
        faces (and their crop files) and is redone; a ``pending`` one (an
        interrupted run) is redone.
        """
        jobs: list[SourceJob] = []
        stale_files: list[str] = []
        with self._transaction():
            for raw in paths:
                path = os.path.abspath(raw)
                try:
                    st = os.stat(path)
                    size, mtime = st.st_size, st.st_mtime_ns
                except OSError:
                    size = mtime = None  # the worker reports why
                row = self._db.execute(
                    "SELECT id, size, mtime_ns, status FROM sources WHERE path = ?", (path,)
                ).fetchone()
                if row is None:
                    cur = self._db.execute("INSERT INTO sources (path) VALUES (?)", (path,))
                    jobs.append(SourceJob(int(cur.lastrowid), path))
                    continue
                source_id, old_size, old_mtime, status = row
                # A source that cannot be seen now (a drive not mounted) keeps its faces
                # and review decisions; only a changed file is redone.
                unchanged = size is None or (old_size, old_mtime) == (size, mtime)
                if status != "pending" and unchanged:
                    continue
                stale_files += [
                    r[0] for r in self._db.execute("SELECT crop_file FROM faces WHERE source_id = ?", (source_id,))
                ]
                self._db.execute("DELETE FROM faces WHERE source_id = ?", (source_id,))
                self._db.execute("UPDATE sources SET status = 'pending', error = NULL WHERE id = ?", (source_id,))
                jobs.append(SourceJob(source_id, path))
        for name in stale_files:
            (self.dataset_dir / name).unlink(missing_ok=True)
        return jobs

    def record(self, result: SourceResult) -> None:
        """Store one source's outcome and its faces atomically (one transaction)."""
        with self._transaction():
            self._db.execute("DELETE FROM faces WHERE source_id = ?", (result.source_id,))
            self._db.execute(
                "UPDATE sources SET size = ?, mtime_ns = ?, sha256 = ?, width = ?, height = ?, status = ?, "
                "error = ?, small_faces = ?, processed_at = ? WHERE id = ?",
                (
                    result.size,
                    result.mtime_ns,
                    result.sha256,
                    result.width,
                    result.height,
                    "error" if result.error else "done",
                    result.error,
                    result.small_faces,
                    time.time(),
                    result.source_id,
                ),
            )
            for f in result.faces:
                hi, lo = _halves(f.dhash)
                cur = self._db.execute(
                    "INSERT INTO faces (source_id, idx, x, y, w, h, crop_x, crop_y, crop_side, likelihood, hair_rgb, "
                    "eye_rgb, skin_rgb, crop_file, crop_size, tags, tags_source, dhash, dhash_hi, dhash_lo) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        result.source_id,
                        f.idx,
                        *f.box,
                        *f.square[:3],
                        f.likelihood,
                        _rgb_text(f.hair_rgb),
                        _rgb_text(f.eye_rgb),
                        _rgb_text(f.skin_rgb),
                        f.crop_file,
                        f.crop_size,
                        ", ".join(f.tags),
                        f.tags_source,
                        f.dhash,
                        hi,
                        lo,
                    ),
                )
                twin = self._earlier_twin(int(cur.lastrowid), f.dhash)
                if twin is not None:
                    self._db.execute("UPDATE faces SET duplicate_of = ? WHERE id = ?", (twin, cur.lastrowid))

    def _earlier_twin(self, face_id: int, dhash: int) -> int | None:
        """The first earlier face whose hash differs from ``dhash`` in at most one bit.

        Two hashes one bit apart agree on one of their 32-bit halves, so the two
        indexed halves find every such twin without a pass over all faces.
        """
        hi, lo = _halves(dhash)
        for other_id, other in self._db.execute(
            "SELECT id, dhash FROM faces WHERE (dhash_hi = ? OR dhash_lo = ?) AND id < ? ORDER BY id", (hi, lo, face_id)
        ):
            if ((other ^ dhash) & _MASK64).bit_count() <= 1:
                return int(other_id)
        return None

    def source_status(self) -> dict[str, int]:
        """Number of sources per status (``pending``, ``done``, ``error``)."""
        counts = dict.fromkeys(("pending", "done", "error"), 0)
        counts.update(self._db.execute("SELECT status, COUNT(*) FROM sources GROUP BY status").fetchall())
        return counts

    def errors(self) -> list[tuple[str, str]]:
        """(source path, reason) of every source that failed, by path."""
        return self._db.execute("SELECT path, error FROM sources WHERE status = 'error' ORDER BY path").fetchall()

    def source_hashes(self) -> dict[str, str]:
        """sha256 of every processed source, as read when it was cropped."""
        return dict(self._db.execute("SELECT path, sha256 FROM sources WHERE sha256 IS NOT NULL"))

    # ---- faces and review ----------------------------------------------------------
    def face_ids(self, decision: str | None = None, *, order: str = "likelihood") -> list[int]:
        """Face ids with ``decision`` (all when None), by likelihood (lowest first) or by source.

        Raises ``ValueError`` for an unknown decision or order.
        """
        if decision is not None and decision not in DECISIONS:
            raise ValueError(f"unknown decision {decision!r}")
        orders = {"likelihood": "likelihood, id", "source": "source_id, idx"}
        if order not in orders:
            raise ValueError(f"unknown order {order!r}")
        where = "WHERE decision = ?" if decision else ""
        args = (decision,) if decision else ()
        return [r[0] for r in self._db.execute(f"SELECT id FROM faces {where} ORDER BY {orders[order]}", args)]

    def faces(self, ids: Iterable[int]) -> dict[int, FaceRecord]:
        """The records of ``ids`` (missing ids are left out)."""
        out: dict[int, FaceRecord] = {}
        ids = list(ids)
        for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for r in self._db.execute(
                "SELECT f.id, f.source_id, s.path, f.x, f.y, f.w, f.h, f.crop_x, f.crop_y, f.crop_side, "
                "f.likelihood, f.crop_file, f.tags, f.tags_source, f.decision, f.dhash, f.duplicate_of "
                f"FROM faces f JOIN sources s ON s.id = f.source_id WHERE f.id IN ({marks})",
                chunk,
            ):
                out[r[0]] = FaceRecord(
                    id=r[0],
                    source_id=r[1],
                    source_path=r[2],
                    box=tuple(r[3:7]),
                    square=tuple(r[7:10]) + (r[9],),
                    likelihood=r[10],
                    crop_file=r[11],
                    tags=tuple(t for t in r[12].split(", ") if t),
                    tags_source=r[13],
                    decision=r[14],
                    dhash=r[15],
                    duplicate_of=r[16],
                )
        return out

    def set_decisions(self, decisions: Mapping[int, str]) -> dict[int, str]:
        """Save a decision per face id at once; returns the previous decisions (for undo).

        Raises ``ValueError`` for an unknown decision (nothing is saved then).
        """
        bad = {d for d in decisions.values() if d not in DECISIONS}
        if bad:
            raise ValueError(f"unknown decision(s): {sorted(bad)}")
        previous = {i: f.decision for i, f in self.faces(decisions).items()}
        now = time.time()
        with self._transaction():
            self._db.executemany(
                "UPDATE faces SET decision = ?, decided_at = ? WHERE id = ?",
                [(d, None if d == "unreviewed" else now, i) for i, d in decisions.items() if i in previous],
            )
        return previous

    def ids_below(self, likelihood: float, decision: str | None = "unreviewed") -> list[int]:
        """Faces whose detector likelihood is under ``likelihood`` (with ``decision`` if given)."""
        where = "likelihood < ?" + (" AND decision = ?" if decision else "")
        args = (likelihood, decision) if decision else (likelihood,)
        return [r[0] for r in self._db.execute(f"SELECT id FROM faces WHERE {where} ORDER BY likelihood", args)]

    def decide_unreviewed(self, *, keep_from: float | None = None, reject_below: float | None = None) -> dict[str, int]:
        """Decide the faces nobody has reviewed yet, by the detector's likelihood, in one transaction:
        keep those at ``keep_from`` or above, reject those below ``reject_below`` (either may be None).

        Decisions already made are left alone. Returns how many faces were kept and
        rejected. Raises ``ValueError`` when the two ranges overlap.
        """
        if keep_from is not None and reject_below is not None and keep_from < reject_below:
            raise ValueError(f"keeping from likelihood {keep_from} and rejecting below {reject_below} overlap")
        unreviewed = self.face_ids("unreviewed")
        rejected = self.ids_below(reject_below) if reject_below is not None else []
        below = set(self.ids_below(keep_from)) if keep_from is not None else set(unreviewed)
        kept = [i for i in unreviewed if i not in below]
        self.set_decisions({**dict.fromkeys(kept, "keep"), **dict.fromkeys(rejected, "reject")})
        return {"keep": len(kept), "reject": len(rejected)}

    def decision_counts(self) -> dict[str, int]:
        """Number of faces per decision, every decision present."""
        counts = dict.fromkeys(DECISIONS, 0)
        counts.update(self._db.execute("SELECT decision, COUNT(*) FROM faces GROUP BY decision").fetchall())
        return counts

    def near_duplicates(self) -> dict[int, int]:
        """{face id: the earlier face it nearly duplicates} (difference hashes at most one bit apart).

        Found as each face is recorded, so this is one indexed read.
        """
        return dict(self._db.execute("SELECT id, duplicate_of FROM faces WHERE duplicate_of IS NOT NULL"))

    def kept(self) -> Iterator[tuple[Path, tuple[str, ...]]]:
        """(crop file, tags) of every kept face, by id: what training may use."""
        for crop_file, tags in self._db.execute(
            "SELECT crop_file, tags FROM faces WHERE decision = 'keep' ORDER BY id"
        ):
            yield self.dataset_dir / crop_file, tuple(t for t in tags.split(", ") if t)


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def open_catalogue(dataset_dir: str | os.PathLike) -> Catalogue:
    """The catalogue of an existing dataset folder. Raises ``FileNotFoundError`` when
    ``dataset_dir`` has none, creating nothing (so a typo does not make an empty dataset)."""
    if not (Path(dataset_dir) / DB_NAME).is_file():
        what = "no such folder" if not Path(dataset_dir).exists() else f"no {DB_NAME} here (not a dataset folder)"
        raise FileNotFoundError(f"{dataset_dir}: {what}; crop into it first")
    return Catalogue(dataset_dir)


def kept_training_items(dataset_dir: str | os.PathLike) -> list[tuple[Path, str | None]]:
    """``(crop file, tag text)`` of every kept face: what ``ml.dataset.faces_from_items`` takes.

    Tag text is the kohya line (``"blue_hair, red_eyes"``), or None for a crop
    with no known tag. Raises ``FileNotFoundError`` as :func:`open_catalogue` does.
    """
    with open_catalogue(dataset_dir) as catalogue:
        return [(path, ", ".join(tags) or None) for path, tags in catalogue.kept()]
