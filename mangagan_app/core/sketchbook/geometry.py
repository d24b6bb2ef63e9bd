"""Face-local coordinates and the curves every part of a face is built from.

Parts are described in *face units*: the face is about two units wide, the eye
line is ``v = 0`` and ``v`` grows downwards. A :class:`Pose` maps a face-unit point
to canvas pixels. Each point carries a depth ``z`` (0 at the head's silhouette,
about 1 for eyes, nose and mouth): yaw and pitch shift a point in proportion to its
depth, so turning or raising the head moves the features across the face while the
silhouette stays put, which is how a drawn head turns.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

Point = tuple[float, float]


@dataclass(frozen=True)
class Pose:
    """Where a face sits on the canvas and how the head is turned.

    ``unit`` is pixels per face unit; ``roll`` (radians, positive = clockwise on
    screen) tilts the whole head; ``yaw`` (positive = features move right) and
    ``pitch`` (positive = looking up, features move up) are in face units per unit
    of depth.
    """

    cx: float
    cy: float
    unit: float
    roll: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0

    def pt(self, u: float, v: float, z: float = 0.0) -> Point:
        x = u + self.yaw * z
        y = v - self.pitch * z
        c, s = math.cos(self.roll), math.sin(self.roll)
        return self.cx + self.unit * (x * c - y * s), self.cy + self.unit * (x * s + y * c)

    def pts(self, points: Iterable[Point], z: float | Sequence[float] = 0.0) -> list[Point]:
        points = list(points)
        zs = [z] * len(points) if isinstance(z, (int, float)) else list(z)
        return [self.pt(u, v, d) for (u, v), d in zip(points, zs, strict=True)]

    def px(self, length: float) -> float:
        """A length in face units as pixels (line widths, radii)."""
        return length * self.unit


def bezier(p0: Point, p1: Point, p2: Point, p3: Point, n: int = 12) -> list[Point]:
    """``n`` points on the cubic Bézier curve p0→p3 (both ends included)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    a, b, c, d = (np.asarray(p, float) for p in (p0, p1, p2, p3))
    curve = (1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t**2 * c + t**3 * d
    return [(float(x), float(y)) for x, y in curve]


def ellipse(
    cu: float,
    cv: float,
    ru: float,
    rv: float,
    n: int = 28,
    angle: float = 0.0,
    start: float = 0.0,
    stop: float = 2 * math.pi,
) -> list[Point]:
    """Points on an ellipse (optionally an arc from ``start`` to ``stop``) rotated by ``angle``."""
    closed = abs((stop - start) - 2 * math.pi) < 1e-9
    t = np.linspace(start, stop, n, endpoint=not closed)
    x, y = ru * np.cos(t), rv * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return [(float(cu + a * c - b * s), float(cv + a * s + b * c)) for a, b in zip(x, y, strict=True)]


def mirror(points: Iterable[Point]) -> list[Point]:
    """The left-right mirror image of ``points`` (u → -u), in reverse order."""
    return [(-u, v) for u, v in reversed(list(points))]


def ribbon(path: Sequence[Point], widths: Sequence[float]) -> list[Point]:
    """A closed outline around ``path`` with the given half-width at each point (tapered strands)."""
    arr = np.asarray(path, float)
    tangent = np.gradient(arr, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    w = np.asarray(widths, float)[:, None]
    left, right = arr + normal * w, arr - normal * w
    return [(float(x), float(y)) for x, y in np.concatenate([left, right[::-1]])]
