"""Which compute device to train and generate on: CUDA, then MPS, then the CPU."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    description: str
    threads: int


def available_cores() -> int:
    """Cores this process may run on (honours ``taskset`` and container CPU sets)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


class DeviceUnavailableError(RuntimeError):
    """The device asked for is not on this machine (or this build of torch cannot use it)."""


def choose_device(prefer: str | None = None, *, leave_core_for_gui: bool = False, threads: int = 0) -> DeviceChoice:
    """Pick the device (``prefer`` = "cuda" / "mps" / "cpu" forces one).

    On the CPU, ``leave_core_for_gui`` keeps one core free so a window stays
    responsive while a worker thread trains, and ``threads`` > 0 caps the threads
    (the description says how many are used). Raises :class:`DeviceUnavailableError`
    when the preferred device is not available.
    """
    if prefer in (None, "cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return DeviceChoice(torch.device("cuda"), f"CUDA ({name})", torch.get_num_threads())
    if prefer in (None, "mps") and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return DeviceChoice(torch.device("mps"), "Apple MPS", torch.get_num_threads())
    if prefer not in (None, "cpu"):
        build = "a CPU-only build" if prefer == "cuda" and torch.version.cuda is None else "installed"
        raise DeviceUnavailableError(f"no {prefer.upper()} device here (torch {torch.__version__}, {build})")
    cores = available_cores()
    usable = max(1, cores - 1) if leave_core_for_gui else cores
    used = min(threads, usable) if threads > 0 else usable
    return DeviceChoice(torch.device("cpu"), f"CPU ({used} of {cores} threads)", used)
