"""Is a training run still learning? Warnings in words, from the numbers a run logs.

Two failures make a GAN run worthless while its loss curves still move:

* **D has won**: it scores every real face as real and every fake as fake (r_t =
  E[sign(D(real))] near 1, D(fake) near 0). G's gradient then vanishes and its
  faces stop improving; waiting longer does not help.
* **G has collapsed**: the faces drawn from different noise look alike.

:class:`HealthMonitor` watches the per-tick means and the preview faces and returns
a :class:`HealthWarning` the first time either persists; it warns again only after
the run has recovered in between.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

D_WON = "discriminator_won"
COLLAPSED = "collapsed"

ADVICE = (
    "try more faces, augmentation (--augment ada), or fine-tuning a model that already draws faces "
    "(Start from / --init-from)"
)


@dataclass(frozen=True)
class HealthWarning:
    kind: str
    step: int
    message: str


def preview_diversity(images: np.ndarray, columns: int) -> float:
    """How much faces drawn from different noise differ: the mean, over preview rows,
    of the per-pixel standard deviation across a row's ``columns`` faces, in [0, 1]
    units. ``images`` (B, H, W, 3) uint8, row by row; each row shares one condition."""
    rows = images[: len(images) // columns * columns].reshape(-1, columns, *images.shape[1:])
    return float((rows.astype(np.float32) / 255.0).std(axis=1).mean())


class HealthMonitor:
    """Turns tick statistics and preview faces into warnings.

    D has won when, for ``ticks`` ticks in a row after ``warmup_steps``, r_t >
    ``r_t_max`` and D(fake) < ``d_fake_min``. G has collapsed when a preview's
    :func:`preview_diversity` is below ``diversity_min`` after ``warmup_steps``.
    """

    def __init__(
        self,
        *,
        warmup_steps: int = 200,
        ticks: int = 4,
        r_t_max: float = 0.95,
        d_fake_min: float = 0.02,
        diversity_min: float = 0.02,
    ):
        self.warmup_steps = warmup_steps
        self.ticks = ticks
        self.r_t_max = r_t_max
        self.d_fake_min = d_fake_min
        self.diversity_min = diversity_min
        self._bad_ticks = self._good_ticks = 0
        self._raised: set[str] = set()

    def tick(self, step: int, means: dict[str, float]) -> HealthWarning | None:
        """One tick's mean statistics (``r_t``, ``d_fake``, ``d_real``); a warning or None.

        After a warning, the run counts as recovered (and may warn again) only once
        ``ticks`` ticks in a row were good: one lucky tick is not a recovery.
        """
        won = means.get("r_t", 0.0) > self.r_t_max and means.get("d_fake", 1.0) < self.d_fake_min
        if won and step > self.warmup_steps:
            self._bad_ticks, self._good_ticks = self._bad_ticks + 1, 0
        else:
            self._bad_ticks, self._good_ticks = 0, self._good_ticks + 1
        if self._good_ticks >= self.ticks:
            self._raised.discard(D_WON)
        if self._bad_ticks < self.ticks:
            return None
        return self._raise(
            D_WON,
            step,
            (
                f"the discriminator has won at step {step}: it rates real faces {means.get('d_real', 0):.2f} and "
                f"generated ones {means['d_fake']:.3f}, so the generator has stopped learning; {ADVICE}"
            ),
        )

    def preview(self, step: int, images: np.ndarray, columns: int) -> HealthWarning | None:
        """The preview faces of ``step`` ((B, H, W, 3) uint8, rows of ``columns``); a warning or None."""
        if step <= self.warmup_steps:
            return None
        diversity = preview_diversity(images, columns)
        if diversity >= self.diversity_min:
            self._raised.discard(COLLAPSED)
            return None
        return self._raise(
            COLLAPSED,
            step,
            (
                f"the generator has collapsed at step {step}: faces from different noise are nearly identical "
                f"(they differ by {diversity:.3f}); {ADVICE}"
            ),
        )

    def _raise(self, kind: str, step: int, message: str) -> HealthWarning | None:
        if kind in self._raised:
            return None
        self._raised.add(kind)
        return HealthWarning(kind, step, message)
