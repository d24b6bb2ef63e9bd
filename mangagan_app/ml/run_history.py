"""What a training run has logged so far, as the Train tab shows it.

A :class:`RunHistory` holds one series of (step, value) points per plotted statistic
(the losses, and D's mean ratings of real and generated faces as probabilities) and
the latest warning the run raised (see :mod:`mangagan_app.ml.health`). It grows from
the trainer's progress ticks, or is read back from a run folder's ``stats.jsonl`` so
that a resumed run shows its past, warning included.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

LOSS_KEYS = ("d_adv", "g_adv", "d_cls", "g_cls", "gp")
# D's mean outputs passed through a sigmoid: 1 means "surely real", 0 "surely generated".
RATING_KEYS = ("d_real", "d_fake")
PLOTTED_KEYS = LOSS_KEYS + RATING_KEYS


@dataclass
class RunHistory:
    """``series[key]``: (step, value) points in step order; ``warning``: the latest one, or ""."""

    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    warning: str = ""

    def add(self, step: int, values: Mapping[str, float], warning: str = "") -> None:
        """One tick: the :data:`PLOTTED_KEYS` statistics among ``values`` at ``step``; other keys are ignored.

        Points already held at ``step`` or later are dropped first: a resumed run redoes
        the steps logged after its checkpoint. A non-empty ``warning`` replaces the
        latest one; an empty one keeps it, since a run does not log its recovery.
        """
        for key in PLOTTED_KEYS:
            if key not in values:
                continue
            points = self.series.setdefault(key, [])
            while points and points[-1][0] >= step:
                points.pop()
            points.append((step, float(values[key])))
        if warning:
            self.warning = warning

    def clear(self) -> None:
        self.series.clear()
        self.warning = ""

    @classmethod
    def from_stats(cls, path: str | Path) -> RunHistory:
        """The history logged in the ``stats.jsonl`` at ``path``.

        A missing or unreadable file gives an empty history, and a line that is not a
        tick record (one cut short by a kill) is skipped: a run's past is shown when it
        can be, and never stops the run from resuming.
        """
        history = cls()
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return history
        for line in lines:
            try:
                record = json.loads(line)
                history.add(int(record["step"]), record, str(record.get("warning", "")))
            except (ValueError, KeyError, TypeError):
                continue
        return history
