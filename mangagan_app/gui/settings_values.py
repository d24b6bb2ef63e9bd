"""Reading remembered choices from ``QSettings`` so that a damaged settings file means defaults.

QSettings' INI reader is lenient: a garbled file gives junk keys and junk values,
and ``value(key, default, type=int)`` on junk returns 0 (not the default) or
raises (``OverflowError`` on ``1e99``), while ``restoreGeometry`` raises on a
string. Every tab reads its settings through :func:`setting`, which checks the
value against the type of its default, falls back to the default with a logged
warning, and remembers the key so the window can say once that settings were reset.
"""

from __future__ import annotations

import logging
import math
import weakref
from typing import Any, TypeVar

from PySide6.QtCore import QByteArray, QSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

_unreadable: weakref.WeakKeyDictionary[QSettings, list[str]] = weakref.WeakKeyDictionary()


class _Unreadable(ValueError):
    pass


def _as_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false", "1", "0"):
        return raw.strip().lower() in ("true", "1")
    raise _Unreadable


def _as_int(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise _Unreadable
    try:
        value = int(raw.strip()) if isinstance(raw, str) else raw
    except ValueError:
        raise _Unreadable from None
    if not -(2**31) <= value < 2**31:  # Qt's spin boxes and indexes take a C int
        raise _Unreadable
    return value


def _as_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise _Unreadable
    try:
        value = float(raw) if isinstance(raw, int | float | str) else math.nan
    except ValueError:
        raise _Unreadable from None
    if not math.isfinite(value):
        raise _Unreadable
    return value


def _as_str(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    raise _Unreadable


def _as_list(raw: Any) -> list[str]:
    # INI keeps a one-item list as a plain string.
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list | tuple) and all(isinstance(v, str) for v in raw):
        return list(raw)
    raise _Unreadable


def _as_bytes(raw: Any) -> QByteArray:
    if isinstance(raw, QByteArray):
        return raw
    if isinstance(raw, bytes | bytearray):
        return QByteArray(bytes(raw))
    raise _Unreadable


def setting(settings: QSettings, key: str, default: T) -> T:
    """The value stored under ``key`` if it has the type of ``default``, else ``default``.

    ``default`` decides the type: bool, int, float, str, list (of str) or
    QByteArray (window geometry). A missing key gives ``default`` silently; an
    unreadable one gives ``default``, logs a warning and is listed by
    :func:`unreadable_settings`. Never raises on what the file holds.
    """
    raw = settings.value(key)
    if raw is None:
        return default
    readers = (
        (bool, _as_bool),
        (int, _as_int),
        (float, _as_float),
        (str, _as_str),
        (list, _as_list),
        (QByteArray, _as_bytes),
    )
    reader = next(fn for kind, fn in readers if isinstance(default, kind))
    try:
        return reader(raw)
    except _Unreadable:
        log.warning(
            "settings %s: %s is not a valid %s; using the default %r",
            settings.fileName(),
            key,
            type(default).__name__,
            default,
        )
        bad = _unreadable.setdefault(settings, [])
        if key not in bad:
            bad.append(key)
        return default


def unreadable_settings(settings: QSettings) -> list[str]:
    """The keys :func:`setting` found unreadable in ``settings`` so far (replaced by defaults)."""
    return list(_unreadable.get(settings, []))
