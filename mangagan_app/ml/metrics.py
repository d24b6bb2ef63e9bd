"""Metrics of generated faces against real faces: one function per metric, registered by name.

Laid out like stylegan2-ada's ``metrics/metric_main.py``: every metric that compares
two sets of feature vectors is a function ``(real (N, D), fake (M, D)) -> float``
registered in :data:`METRICS` under its name, and :func:`compute_metrics` runs any of
them. The evaluator (:mod:`mangagan_app.ml.evaluation`) only composes them.

* ``frechet`` — the Fréchet distance between Gaussians fitted to both sets.
* ``precision``, ``recall`` — Kynkäänniemi et al. 2019, *Improved Precision and Recall
  Metric for Assessing Generative Models*: a set's manifold is the union of balls
  around its points, each ball's radius the distance to its ``k``-th nearest neighbour
  in the same set. Precision is the share of fakes inside the real manifold, recall
  the share of reals inside the fake manifold.
* ``density``, ``coverage`` — Naeem et al. 2020, *Reliable Fidelity and Diversity
  Metrics for Generative Models*: density counts how many real balls hold each fake,
  ``(1 / kM) Σ_fake Σ_real 1[fake in real ball]`` (about 1 for two samples of one
  distribution, unbounded above); coverage is the share of real balls that hold at
  least one fake (robust to fake outliers, unlike recall).

"Inside a ball" is strictly nearer than its radius, as in Naeem et al.'s reference
code: two identical sets then give precision = recall = coverage = 1 and density = 1.
All four depend on the set sizes and on ``k`` (:data:`K_NEAREST` = 5, both papers'
choice): compare only with a real-vs-real floor measured with as many faces a side.

:func:`memorisation` is not in the registry: it is measured on distances to the
training set, not on two feature sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from mangagan_app.ml.originality import NEAR_COPY_QUANTILE

K_NEAREST = 5
_CHUNK = 1024  # rows of a distance block: 1024 × N float64 stays a few tens of MB

FeatureMetric = Callable[[np.ndarray, np.ndarray], float]  # (real (N, D), fake (M, D)) -> value
METRICS: dict[str, FeatureMetric] = {}


def register_metric(name: str) -> Callable[[FeatureMetric], FeatureMetric]:
    """Decorator: register a feature-set metric in :data:`METRICS` under ``name``."""

    def register(fn: FeatureMetric) -> FeatureMetric:
        METRICS[name] = fn
        return fn

    return register


def compute_metrics(real: np.ndarray, fake: np.ndarray, names: Iterable[str] | None = None) -> dict[str, float]:
    """``{name: value}`` of the metrics ``names`` (default: all of :data:`METRICS`) of ``fake`` against ``real``.

    Raises ``KeyError`` naming an unknown metric, and what the metrics raise.
    """
    names = list(METRICS) if names is None else list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise KeyError(f"unknown metric(s): {', '.join(unknown)}; known: {', '.join(METRICS)}")
    return {name: METRICS[name](real, fake) for name in names}


# ---- Fréchet distance ------------------------------------------------------------------------------
@register_metric("frechet")
def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` (N, D) and ``b`` (M, D).

    ``|μa − μb|² + Tr(Σa + Σb − 2 (Σa Σb)^½)``; the trace of the square root is the
    sum of square roots of the eigenvalues of Σa Σb (real and ≥ 0 for two
    covariance matrices, up to rounding). Raises ``ValueError`` for fewer than 2 rows.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Fréchet distance needs at least 2 faces on each side")
    mu = a.mean(axis=0) - b.mean(axis=0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig = np.linalg.eigvals(sa @ sb)
    covmean_trace = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2.0 * covmean_trace)


# ---- k-nearest-neighbour manifolds -------------------------------------------------------------------
def _as_sets(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"need two (N, D) feature sets of one D, got {real.shape} and {fake.shape}")
    if k < 1 or min(len(real), len(fake)) <= k:
        raise ValueError(
            f"k = {k} nearest neighbours need more than {k} faces a side, "
            f"got {len(real)} real and {len(fake)} generated"
        )
    return real, fake


def _distance_blocks(a: np.ndarray, b: np.ndarray):
    """(start row, Euclidean distances (rows, len(b))) for blocks of ``a``'s rows."""
    b_sq = (b * b).sum(axis=1)
    for start in range(0, len(a), _CHUNK):
        block = a[start : start + _CHUNK]
        d2 = (block * block).sum(axis=1)[:, None] + b_sq[None, :] - 2.0 * block @ b.T
        yield start, np.sqrt(np.clip(d2, 0.0, None))


def knn_radii(x: np.ndarray, k: int = K_NEAREST) -> np.ndarray:
    """(N,) distance from each row of ``x`` (N, D) to its ``k``-th nearest other row (the ball radii)."""
    x = np.asarray(x, np.float64)
    radii = np.empty(len(x))
    for start, d in _distance_blocks(x, x):
        rows = np.arange(len(d))
        d[rows, start + rows] = 0.0  # a point is its own 0-th neighbour, whatever the rounding says
        radii[start : start + len(d)] = np.partition(d, k, axis=1)[:, k]
    return radii


def _inside_counts(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(len(points),) how many balls (``centres``, ``radii``) hold each point, strictly inside."""
    return np.concatenate([(d < radii[None, :]).sum(axis=1) for _, d in _distance_blocks(points, centres)])


@register_metric("precision")
def precision(real: np.ndarray, fake: np.ndarray, k: int = K_NEAREST) -> float:
    """Share of ``fake`` rows inside at least one real ball (radius: k-th nearest real).

    Raises ``ValueError`` for feature sets of different widths or with ``k`` rows or fewer.
    """
    real, fake = _as_sets(real, fake, k)
    return float((_inside_counts(fake, real, knn_radii(real, k)) > 0).mean())


@register_metric("recall")
def recall(real: np.ndarray, fake: np.ndarray, k: int = K_NEAREST) -> float:
    """Share of ``real`` rows inside at least one fake ball (radius: k-th nearest fake).

    Raises ``ValueError`` for feature sets of different widths or with ``k`` rows or fewer.
    """
    real, fake = _as_sets(real, fake, k)
    return float((_inside_counts(real, fake, knn_radii(fake, k)) > 0).mean())


@register_metric("density")
def density(real: np.ndarray, fake: np.ndarray, k: int = K_NEAREST) -> float:
    """``(1 / kM) Σ_fake Σ_real 1[fake inside the real ball]``: about 1 when ``fake`` is drawn
    like ``real``, above 1 when fakes crowd dense real regions, below when they stray.

    Raises ``ValueError`` for feature sets of different widths or with ``k`` rows or fewer.
    """
    real, fake = _as_sets(real, fake, k)
    return float(_inside_counts(fake, real, knn_radii(real, k)).sum() / (k * len(fake)))


@register_metric("coverage")
def coverage(real: np.ndarray, fake: np.ndarray, k: int = K_NEAREST) -> float:
    """Share of real balls (radius: k-th nearest real) holding at least one ``fake`` row.

    Raises ``ValueError`` for feature sets of different widths or with ``k`` rows or fewer.
    """
    real, fake = _as_sets(real, fake, k)
    radii = knn_radii(real, k)
    nearest_fake = np.concatenate([d.min(axis=1) for _, d in _distance_blocks(real, fake)])
    return float((nearest_fake < radii).mean())


# ---- memorisation ------------------------------------------------------------------------------------
def near_copy_threshold(unseen_nearest: np.ndarray) -> float:
    """The nearest-training-face distance that only 1 % of unseen real faces come below."""
    return float(np.quantile(np.asarray(unseen_nearest, np.float64), NEAR_COPY_QUANTILE))


def memorisation(generated_nearest: Sequence[np.ndarray], unseen_nearest: Sequence[np.ndarray]) -> float:
    """Share of generated faces nearer their nearest training face than 99 % of unseen real faces
    are, in every space given.

    ``generated_nearest[s]`` (M,) and ``unseen_nearest[s]`` (N,) are the distances to the
    nearest training face in space ``s`` (e.g. pixels, then tagger features). Raises
    ``ValueError`` when no space, an empty side or mismatched spaces are given.
    """
    if not generated_nearest or len(generated_nearest) != len(unseen_nearest):
        raise ValueError("need the generated and the unseen distances of the same spaces, at least one")
    if any(len(u) == 0 for u in unseen_nearest) or any(len(g) == 0 for g in generated_nearest):
        raise ValueError("memorisation needs at least one generated and one unseen face")
    flagged = np.ones(len(generated_nearest[0]), bool)
    for gen, unseen in zip(generated_nearest, unseen_nearest, strict=True):
        flagged &= np.asarray(gen) < near_copy_threshold(unseen)
    return float(flagged.mean())
