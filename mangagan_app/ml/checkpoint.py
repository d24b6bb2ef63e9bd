"""Shipped weights: ``NAME.safetensors`` (the EMA generator) + ``NAME.json`` (model card).

The card holds ``format``, ``architecture`` (:class:`Architecture`), ``vocabulary``
(``VOCABULARY.to_json()``), ``training`` (config, data summary, steps) and
``sha256`` of the safetensors file (the same checkpoint always exports the same
bytes; ``sha256_same_weights`` lists the checksums an earlier export of the same
weights may have had, see :func:`safetensors_bytes`). Other parts of the app add their own keys
(``metrics``, ``directions``) with :func:`update_card`; the checksum covers only the
weights, so they do not invalidate it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from mangagan_app.core.attributes import VOCABULARY, Vocabulary
from mangagan_app.core.files import atomic_write_bytes, atomic_write_json, new_folders
from mangagan_app.ml.networks import Architecture, Generator
from mangagan_app.ml.resume_state import load_resume_state

CARD_FORMAT = "mangagan-generator/1"


class WeightsError(ValueError):
    """A weights file or model card that cannot be used; names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def weights_files(path: str | Path) -> tuple[Path, Path]:
    """(``NAME.safetensors``, ``NAME.json``) for ``NAME``, ``NAME.safetensors`` or ``NAME.json``."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> tuple[bytes, list[str]]:
    """The safetensors encoding of ``tensors`` with ``metadata``, the same bytes every time, and
    the sha256 of each other order of the metadata keys.

    safetensors keeps the metadata in a hash map whose order changes from one process to
    the next, so exports of one checkpoint used to differ in their header (and sha256).
    Here the header is written again with the metadata keys sorted; the other orders are
    the checksums an export made before this may have, so its faces still restore.
    """
    raw = save_safetensors(tensors, metadata=metadata)
    size = int.from_bytes(raw[:8], "little")
    header, body = json.loads(raw[8 : 8 + size]), raw[8 + size :]
    entries = {k: v for k, v in header.items() if k != "__metadata__"}

    def encode(order: tuple[str, ...]) -> bytes:
        text = json.dumps(
            {"__metadata__": {k: metadata[k] for k in order}, **entries}, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
        text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes with spaces
        return len(text).to_bytes(8, "little") + text + body

    data, *others = (encode(order) for order in itertools.permutations(sorted(metadata)))
    return data, sorted({hashlib.sha256(other).hexdigest() for other in others})


def export_run(run_dir: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Export the EMA generator of the run's newest checkpoint to ``out`` (+ card).

    The same checkpoint always gives the same weights bytes. The folder of ``out`` is
    created if missing. Returns (weights path, card path). Raises ``RunFolderError`` when the run has no
    readable checkpoint and ``OSError`` when the files cannot be written (disk full,
    read-only): then an existing model of that name is left as it was, weights and card.
    """
    state = load_resume_state(run_dir)
    weights_path, card_path = weights_files(out)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state["G_ema"].items()}
    # Spelled out in full, so the card of a run saved before a setting existed says what it is.
    arch = Architecture.from_dict(state["architecture"]).to_dict()
    data, same_weights = safetensors_bytes(tensors, {"format": CARD_FORMAT, "architecture": json.dumps(arch)})
    cfg = state["config"]
    card = {
        "format": CARD_FORMAT,
        "name": weights_path.stem,
        "weights_file": weights_path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha256_same_weights": same_weights,
        "architecture": arch,
        "vocabulary": state["vocabulary"],
        "training": {
            "config": cfg,
            "data": state["data"],
            "steps": state["step"],
            "epochs_completed": state["epoch"],
            "images_seen": state["step"] * cfg["batch"],
            "hours": round(state.get("elapsed_seconds", 0.0) / 3600, 3),
            # Only in the card: the weights' bytes, hence their sha256, do not depend on it.
            "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }
    if state.get("warm_start"):
        card["training"]["warm_start"] = state["warm_start"]  # the steps and hours before this run
    # The card is staged before the weights replace the old ones and renamed after, so a
    # full disk fails before anything is replaced and never leaves new weights beside an old card.
    with new_folders(weights_path.parent):
        staged = atomic_write_json(card_path.with_name(f".{card_path.name}.staged"), card)
        try:
            atomic_write_bytes(weights_path, data)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        os.replace(staged, card_path)
    return weights_path, card_path


def training_steps(card: dict) -> int | None:
    """All the optimiser steps behind a model: its own run's and those of the runs it started from."""
    training = card.get("training") or {}
    if training.get("steps") is None:
        return None
    return int(training["steps"]) + int((training.get("warm_start") or {}).get("steps", 0))


def read_card(path: str | Path) -> dict:
    """The model card beside ``path``. Raises :class:`WeightsError` if missing or unreadable."""
    _, card_path = weights_files(path)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(card_path, "model card missing (every .safetensors needs its .json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(card_path, f"model card unreadable: {exc}") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise WeightsError(card_path, f"not a {CARD_FORMAT} model card")
    return card


def update_card(path: str | Path, **entries) -> dict:
    """Add or replace top-level card entries (e.g. ``metrics=…``, ``directions=…``) atomically."""
    card = read_card(path)
    card.update(entries)
    atomic_write_json(weights_files(path)[1], card)
    return card


def load_generator(
    weights_path: str | Path, device: str | torch.device = "cpu", vocabulary: Vocabulary = VOCABULARY
) -> tuple[Generator, dict]:
    """The generator stored at ``weights_path`` in eval mode, and its model card.

    ``G(z (B, z_dim) float, cond (B, vocabulary.dim) float) -> (B, 3, H, W)`` in [-1, 1].
    Raises :class:`WeightsError` naming the file when the weights or card are missing,
    corrupted (checksum mismatch, unreadable safetensors), made for another
    vocabulary, or do not fit the architecture the card describes.
    """
    st_path, card_path = weights_files(weights_path)
    card = read_card(st_path)
    try:
        data = st_path.read_bytes()
    except OSError as exc:
        raise WeightsError(st_path, f"cannot read the weights: {exc.strerror or exc}") from None
    if hashlib.sha256(data).hexdigest() != card.get("sha256"):
        raise WeightsError(st_path, "sha256 does not match the model card: the file is corrupted or was replaced")
    if card.get("vocabulary") != vocabulary.to_json():
        raise WeightsError(card_path, _vocabulary_difference(card.get("vocabulary"), vocabulary))
    try:
        arch = Architecture.from_dict(card["architecture"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(card_path, f"architecture not understood: {exc}") from None
    if arch.cond_dim != vocabulary.dim:
        raise WeightsError(card_path, f"condition size {arch.cond_dim} ≠ vocabulary size {vocabulary.dim}")
    try:
        tensors = load_safetensors(data)
    except SafetensorError as exc:
        raise WeightsError(st_path, f"not a readable safetensors file: {exc}") from None
    generator = Generator(arch)
    try:
        generator.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise WeightsError(st_path, "the tensors do not fit the architecture in the card: " + " ".join(first)) from None
    return generator.to(device).eval().requires_grad_(False), card


def _vocabulary_difference(theirs, vocabulary: Vocabulary) -> str:
    try:
        other = Vocabulary.from_json(theirs)
    except (KeyError, TypeError, ValueError):
        return "the model card's vocabulary is not readable"
    model_slots, app_slots = set(other.slot_names()), set(vocabulary.slot_names())
    parts = []
    if app_slots - model_slots:
        parts.append("missing " + ", ".join(sorted(app_slots - model_slots)))
    if model_slots - app_slots:
        parts.append("extra " + ", ".join(sorted(model_slots - app_slots)))
    detail = "; ".join(parts) or "same tags in a different order"
    return f"the model was trained for another attribute vocabulary ({detail})"
