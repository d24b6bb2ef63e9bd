"""Split the real-faces development set once, by a fixed rule, into linked folders.

The set (its tar or the extracted folder, ``<id>.jpg`` + optional
``<id>.txt``) is third-party artwork: it is never copied, only linked from a folder
outside the repository. A sketchbook folder (``<id>.png`` + ``<id>.txt``, from
``mangagan synth``) splits by the same rule, so the trainers can be compared on both.
The rule, by the numeric id of each face:

* ``measure``  — id % 10 == 0 (about 3,000 faces): no training run ever sees them;
* ``train``    — every other face (about 27,400);
* ``train3k``  — the part of ``train`` with id % 10 == 1 (about 3,000): the artist's case;
* ``train1k``  — the part of ``train3k`` with id % 30 == 1 (about 1,000) and ``train300`` the part
  with id % 100 == 1 (about 300): an artist's own characters, for fine-tuning.

Usage: ``python benchmarks/real_faces_data.py DATA OUT`` prints the folders and counts.
"""

from __future__ import annotations

import argparse
import os
import tarfile
from pathlib import Path

PARTS = ("train", "train3k", "train1k", "train300", "measure")
FACE_SUFFIXES = (".jpg", ".png")


def _part_of(face_id: int) -> tuple[str, ...]:
    if face_id % 10 == 0:
        return ("measure",)
    if face_id % 10 != 1:
        return ("train",)
    return (
        "train",
        "train3k",
        *(["train1k"] if face_id % 30 == 1 else []),
        *(["train300"] if face_id % 100 == 1 else []),
    )


def numbered_faces(folder: Path) -> list[Path]:
    """The faces of ``folder`` named by a number, in the order of their numbers."""
    faces = (p for p in folder.iterdir() if p.suffix in FACE_SUFFIXES and p.stem.isdigit())
    return sorted(faces, key=lambda p: int(p.stem))


def _source_folder(data: Path, out: Path) -> Path:
    """The folder holding the faces: ``data`` itself, its only subfolder (a tar's top folder), or
    the tar extracted under ``out``."""
    if data.is_dir():
        subfolders = [p for p in data.iterdir() if p.is_dir()]
        has_faces = bool(numbered_faces(data))
        return subfolders[0] if not has_faces and len(subfolders) == 1 else data
    if not tarfile.is_tarfile(data):
        raise ValueError(f"{data}: neither a folder nor a tar archive")
    extracted = out / "extracted"
    marker = extracted / ".complete"
    if not marker.exists():
        with tarfile.open(data) as tar:
            tar.extractall(extracted, filter="data")
        marker.touch()
    return _source_folder(extracted, out)


def split_real_faces(data: str | Path, out: str | Path) -> dict[str, Path]:
    """Link every face of ``data`` into ``out/<part>`` by the fixed rule; returns the part folders.

    Idempotent: links already present are kept. Raises ``ValueError`` when ``data``
    holds no numbered ``.jpg`` or ``.png`` faces.
    """
    out = Path(out)
    source = _source_folder(Path(data), out)
    faces = numbered_faces(source)
    if not faces:
        raise ValueError(f"{source}: no numbered .jpg or .png faces")
    folders = {part: out / part for part in PARTS}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for face in faces:
        for part in _part_of(int(face.stem)):
            for path in (face, face.with_suffix(".txt")):
                link = folders[part] / path.name
                if path.exists() and not link.exists():
                    os.symlink(path.resolve(), link)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the development face set: its tar or the extracted folder")
    parser.add_argument("out", type=Path, help="a folder outside the repository for the linked parts")
    args = parser.parse_args()
    for part, folder in split_real_faces(args.data, args.out).items():
        tagged = len(list(folder.glob("*.txt")))
        print(f"{part:8s} {folder}  {len(numbered_faces(folder))} faces, {tagged} tagged")


if __name__ == "__main__":
    main()
