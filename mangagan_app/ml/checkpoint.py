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
DISCRIMINATOR_FORMAT = "mangagan-discriminator/1"
DISCRIMINATOR_SUFFIX = ".discriminator.safetensors"


class WeightsError(ValueError):
    """A weights file or model card that cannot be used; names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def models_in(folder: str | Path) -> list[Path]:
    """The models' ``*.safetensors`` in ``folder`` (not the discriminators shipped beside them), by name."""
    return sorted(p for p in Path(folder).glob("*.safetensors") if not p.name.endswith(DISCRIMINATOR_SUFFIX))


def fine_tunable_models(folder: str | Path) -> list[Path]:
    """The models in ``folder`` that ship a discriminator, so that a run can start from them."""
    found = []
    for path in models_in(folder):
        try:
            if isinstance(read_card(path).get("discriminator"), dict):
                found.append(path)
        except WeightsError:
            continue
    return found


def discriminator_file(path: str | Path) -> Path:
    """``NAME.discriminator.safetensors`` beside the model ``NAME``: the D a fine-tune starts from."""
    weights, _ = weights_files(path)
    return weights.with_name(weights.stem + DISCRIMINATOR_SUFFIX)


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


def export_run(run_dir: str | Path, out: str | Path, *, half: bool = False) -> tuple[Path, Path]:
    """Export the EMA generator of the run's newest checkpoint to ``out`` (+ card), and its D beside it.

    ``half`` stores both in float16, half the bytes: what lets a 128-px model fit the
    installer's weight budget beside the 64-px one. They load as float32 (``load_state_dict``
    converts), so a half model draws within float16 rounding of the run's faces and the card
    says ``"storage": "float16"``. The same checkpoint always gives the same weights bytes. The folder of ``out`` is
    created if missing. Returns (weights path, card path). Raises ``RunFolderError`` when the run has no
    readable checkpoint and ``OSError`` when the files cannot be written (disk full,
    read-only): then an existing model of that name is left as it was, weights and card.
    """
    state = load_resume_state(run_dir)
    weights_path, card_path = weights_files(out)
    tensors = _stored(state["G_ema"], half)
    # Spelled out in full, so the card of a run saved before a setting existed says what it is.
    arch = Architecture.from_dict(state["architecture"]).to_dict()
    data, same_weights = safetensors_bytes(tensors, {"format": CARD_FORMAT, "architecture": json.dumps(arch)})
    d_path = discriminator_file(weights_path)
    d_data, _ = safetensors_bytes(_stored(state["D"], half), {"format": DISCRIMINATOR_FORMAT})
    cfg = state["config"]
    card = {
        "format": CARD_FORMAT,
        "name": weights_path.stem,
        "weights_file": weights_path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha256_same_weights": same_weights,
        "architecture": arch,
        "storage": "float16" if half else "float32",
        "vocabulary": state["vocabulary"],
        "discriminator": {"file": d_path.name, "sha256": hashlib.sha256(d_data).hexdigest()},
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
            atomic_write_bytes(d_path, d_data)
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


def card_vocabulary(card: dict, card_path: str | Path) -> Vocabulary:
    """The attribute vocabulary a model was trained with (the app's for a card without one)."""
    if "vocabulary" not in card:
        return VOCABULARY
    try:
        return Vocabulary.from_json(card["vocabulary"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(card_path, f"the model card's vocabulary is not readable ({exc})") from None


def _read_checked(path: Path, sha256: str | None) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(path, f"cannot read the weights: {exc.strerror or exc}") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise WeightsError(path, "sha256 does not match the model card: the file is corrupted or was replaced")
    return data


def _stored(state: dict[str, torch.Tensor], half: bool) -> dict[str, torch.Tensor]:
    """``state`` as the tensors written to disk: on the CPU, contiguous, floats in float16 when ``half``
    (BatchNorm's batch counter stays an integer)."""
    out = {}
    for key, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        out[key] = tensor.half() if half and tensor.is_floating_point() else tensor
    return out


def load_generator(weights_path: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, dict]:
    """The generator stored at ``weights_path`` in eval mode, and its model card.

    ``G(z (B, z_dim) float, cond (B, vocabulary.dim) float) -> (B, 3, H, W)`` in [-1, 1],
    in the card's vocabulary (:func:`card_vocabulary`: a model trained with
    ``--vocabulary auto`` has its data's own tags after the app's).
    Raises :class:`WeightsError` naming the file when the weights or card are missing,
    corrupted (checksum mismatch, unreadable safetensors), or do not fit the
    vocabulary and architecture the card describes.
    """
    st_path, card_path = weights_files(weights_path)
    card = read_card(st_path)
    data = _read_checked(st_path, card.get("sha256"))
    vocabulary = card_vocabulary(card, card_path)
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


def load_for_fine_tune(weights_path: str | Path) -> dict:
    """What a run started from the model ``weights_path`` takes: its G (as G and EMA G),
    its shipped D, architecture and vocabulary, in the layout of a resume state.

    Raises :class:`WeightsError` naming the file when the model ships no
    discriminator (it was exported before models carried one) or a file is damaged.
    """
    generator, card = load_generator(weights_path)
    _, card_path = weights_files(weights_path)
    entry = card.get("discriminator")
    if not isinstance(entry, dict) or "file" not in entry:
        raise WeightsError(
            card_path,
            "this model ships no discriminator, so it cannot be fine-tuned; start from a run folder instead",
        )
    d_path = card_path.with_name(entry["file"])
    try:
        d_state = load_safetensors(_read_checked(d_path, entry.get("sha256")))
    except SafetensorError as exc:
        raise WeightsError(d_path, f"not a readable safetensors file: {exc}") from None
    g_state = {k: v.clone() for k, v in generator.state_dict().items()}
    return {
        "G": g_state,
        "G_ema": {k: v.clone() for k, v in g_state.items()},
        "D": d_state,
        "architecture": generator.arch.to_dict(),
        "vocabulary": card.get("vocabulary", VOCABULARY.to_json()),
        "step": training_steps(card) or 0,
        "elapsed_seconds": 3600 * float((card.get("training") or {}).get("hours", 0.0)),
    }
