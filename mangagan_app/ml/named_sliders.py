"""Named sliders: noise directions that move one factor an artist can name (InterFaceGAN-style).

For a generator, many noise vectors are drawn with random attributes, and the look
reader reads the factors of the faces they give (head tilt, eye size, hair length…);
the tagger reads their attribute scores. A linear model of every reading in noise
space, W (readings × z_dim), then gives each factor the direction that moves that
factor by one unit of its spread and, to first order, no other reading: the columns of
the pseudo-inverse of W (Shen et al. 2020's conditional manipulation, for all
readings at once). Each direction is then measured by rendering: its factor's change
per slider unit, how monotonic that change is (Spearman), its side effects on the
other factors, and the share of faces whose attributes the tagger still reads the
same. A factor the model did not learn (its slider moves it by less than
:data:`MIN_CHANGE`) is dropped, with the reason kept.

A slider unit is one standard deviation of the noise along the (unit) direction, as
for the unsupervised directions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from mangagan_app.core.attributes import Vocabulary
from mangagan_app.core.sketchbook.look import LOOK_FACTORS
from mangagan_app.ml.generator_service import random_conditions
from mangagan_app.ml.look_reader import LookReader
from mangagan_app.ml.sampling import image_grid, to_uint8
from mangagan_app.ml.tagger import AttributeTagger, decide

FIT_SAMPLES = 6000
MEASURE_FACES = 100
SLIDER_VALUES = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
# A slider must move its factor by at least this share of the factor's spread on the
# sketchbook per unit, else the model has not learned the factor well enough to steer it.
MIN_CHANGE = 0.15
# Below this share of a factor's variance explained on unseen faces, the look reader cannot
# tell what a slider does to it: such a factor gets no slider.
MIN_READER_R2 = 0.5
GOALS = {"spearman": 0.9, "attributes_kept": 0.95, "side_effect_ratio": 1 / 3}

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SliderMeasure:
    """What one named slider does, measured over ``faces`` faces from −3 to +3."""

    change_per_unit: float  # of its factor, in spreads of that factor on the sketchbook
    spearman: float  # mean over faces of the rank correlation of slider value and reading
    worst_side_effect: str  # the other factor it moves most
    side_effect_ratio: float  # that factor's change per unit / the target's
    attributes_kept: float  # share of faces read with the same attributes at ±2 as at 0
    faces: int

    def to_card(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class NamedSlider:
    key: str
    name: str
    vector: np.ndarray  # (z_dim,) unit
    measure: SliderMeasure


@dataclass
class NamedSliders:
    """The sliders kept (strongest first) and the factors dropped, with why."""

    kept: list[NamedSlider] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    samples: int = 0
    random_attributes_kept: float = 0.0  # the same measure for a random direction


def _render(generator: torch.nn.Module, z: torch.Tensor, cond: torch.Tensor, batch: int = 500) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate(
            [to_uint8(generator(z[i : i + batch], cond[i : i + batch])) for i in range(0, len(z), batch)]
        )


def _readings(images: np.ndarray, reader: LookReader, tagger: AttributeTagger) -> tuple[np.ndarray, np.ndarray]:
    """(factors in spreads of each factor, tagger scores) of uint8 faces."""
    return reader.read(images) / reader.std, tagger.read(images)[1]


def _fit_readings(images: np.ndarray, reader: LookReader, tagger: AttributeTagger) -> np.ndarray:
    """What the directions hold still or move: the factors (in spreads) and the tagger's logits,
    which change linearly where its scores saturate."""
    return np.concatenate([reader.read(images) / reader.std, tagger.logits(images)], axis=1)


def fit_directions(z: np.ndarray, readings: np.ndarray) -> np.ndarray:
    """(K, z_dim) unit noise directions, row k moving reading k and (linearly) no other.

    ``z`` (N, z_dim) noise, ``readings`` (N, K) what was read off the faces it gave.
    Least squares gives each reading's gradient W (K, z_dim); the rows of pinv(W)ᵀ are
    the directions along which one reading changes by one unit and the others by zero.
    """
    z_centred = z - z.mean(0)
    readings_centred = readings - readings.mean(0)
    gradients = np.linalg.lstsq(z_centred, readings_centred, rcond=None)[0].T  # (K, z_dim)
    directions = np.linalg.pinv(gradients).T  # (K, z_dim)
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def _spearman(values: np.ndarray, readings: np.ndarray) -> np.ndarray:
    """Rank correlation of ``values`` (V,) with each row of ``readings`` (faces, V)."""
    ranks = readings.argsort(axis=1).argsort(axis=1).astype(np.float64)
    ranked_values = values.argsort().argsort().astype(np.float64)
    a = ranks - ranks.mean(1, keepdims=True)
    b = ranked_values - ranked_values.mean()
    return (a @ b) / np.maximum(np.sqrt((a * a).sum(1) * (b * b).sum()), 1e-12)


def measure_slider(
    generator: torch.nn.Module,
    vector: np.ndarray,
    index: int,
    z: torch.Tensor,
    cond: torch.Tensor,
    reader: LookReader,
    tagger: AttributeTagger,
    vocabulary: Vocabulary,
) -> SliderMeasure:
    """Move ``len(z)`` faces along ``vector`` through :data:`SLIDER_VALUES` and measure factor ``index``."""
    values = np.array(SLIDER_VALUES)
    direction = torch.from_numpy(vector.astype(np.float32))
    factors, decided = [], []
    for v in values:
        factor, scores = _readings(_render(generator, z + float(v) * direction, cond), reader, tagger)
        factors.append(factor)
        decided.append(decide(scores, vocabulary))
    stacked = np.stack(factors, axis=1)  # (faces, V, F)
    slopes = np.polyfit(values, stacked.mean(0), 1)[0]  # (F,) change per unit, mean over faces
    target = float(slopes[index])
    others = np.abs(np.delete(slopes, index))
    worst = int(others.argmax())
    worst_key = [f.key for i, f in enumerate(LOOK_FACTORS) if i != index][worst]
    centre = list(values).index(0.0)
    kept = np.ones(len(z), bool)
    for v in (-2.0, 2.0):
        kept &= (decided[list(values).index(v)] == decided[centre]).all(axis=1)
    return SliderMeasure(
        change_per_unit=abs(target),
        spearman=float(np.sign(target) * _spearman(values, stacked[:, :, index]).mean()),
        worst_side_effect=worst_key,
        side_effect_ratio=float(others[worst] / max(abs(target), 1e-9)),
        attributes_kept=float(kept.mean()),
        faces=len(z),
    )


def find_named_sliders(
    generator: torch.nn.Module,
    vocabulary: Vocabulary,
    reader: LookReader,
    tagger: AttributeTagger,
    *,
    samples: int = FIT_SAMPLES,
    faces: int = MEASURE_FACES,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> NamedSliders:
    """Fit, measure and keep the named sliders of ``generator`` (in eval mode, on the CPU).

    Deterministic for ``seed``. ``progress(stage, done, total)`` after each step.
    """
    z_dim = generator.arch.z_dim
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn((samples, z_dim), generator=gen)
    cond = torch.from_numpy(random_conditions(samples, vocabulary, rng))
    readings = _fit_readings(_render(generator, z, cond), reader, tagger)
    if progress:
        progress("reading faces", samples, samples)
    # Every reading is held still by every other direction: the attributes the tagger reads
    # too, so a slider leaves them as they were.
    directions = fit_directions(z.numpy(), readings)[: len(LOOK_FACTORS)]
    test_z = torch.randn((faces, z_dim), generator=gen)
    test_cond = torch.from_numpy(random_conditions(faces, vocabulary, rng))
    result = NamedSliders(samples=samples)
    readable = {f["key"]: f.get("r2_unseen", 1.0) for f in reader.card.get("factors", [])}
    for i, factor in enumerate(LOOK_FACTORS):
        if readable.get(factor.key, 1.0) < MIN_READER_R2:
            result.dropped[factor.key] = (
                f"the look reader cannot read {factor.name.lower()} (R² {readable[factor.key]:.2f} on unseen "
                f"faces, < {MIN_READER_R2})"
            )
            continue
        measure = measure_slider(generator, directions[i], i, test_z, test_cond, reader, tagger, vocabulary)
        if measure.change_per_unit < MIN_CHANGE:
            result.dropped[factor.key] = (
                f"moves {factor.name.lower()} by {measure.change_per_unit:.2f} of its spread per unit "
                f"(< {MIN_CHANGE}): the model has not learned it well enough to steer"
            )
        else:
            result.kept.append(NamedSlider(factor.key, factor.name, directions[i], measure))
        if progress:
            progress("measuring sliders", i + 1, len(LOOK_FACTORS))
    result.kept.sort(key=lambda s: -s.measure.change_per_unit)
    # What any move of this length does to the tagger's reading: the yardstick for "attributes kept".
    random_direction = torch.randn(z_dim, generator=gen).numpy()
    random_direction /= np.linalg.norm(random_direction)
    reference = measure_slider(generator, random_direction, 0, test_z, test_cond, reader, tagger, vocabulary)
    result.random_attributes_kept = reference.attributes_kept
    return result


def to_card(result: NamedSliders, reader: LookReader) -> dict:
    """JSON for the model card's ``named_sliders`` key."""
    return {
        "method": "InterFaceGAN-style: least-squares gradients of the look reader's factors and the tagger's "
        "logits in noise space; each factor's direction from their pseudo-inverse (moves it, holds the rest)",
        "look_reader_sha256": reader.card.get("sha256", ""),
        "samples": result.samples,
        "min_change": MIN_CHANGE,
        "min_reader_r2": MIN_READER_R2,
        "goals": GOALS,
        "sliders": [
            {"key": s.key, "name": s.name, "vector": [float(x) for x in s.vector], "measure": s.measure.to_card()}
            for s in result.kept
        ],
        "dropped": result.dropped,
        "random_direction_attributes_kept": round(result.random_attributes_kept, 4),
    }


def store_named_sliders(weights_path, reader: LookReader, tagger: AttributeTagger, **options) -> NamedSliders:
    """Find the named sliders of the exported model at ``weights_path`` (``options`` as for
    :func:`find_named_sliders`) and write them into its card under ``named_sliders``. Raises what
    :func:`~mangagan_app.ml.checkpoint.load_generator` raises."""
    from mangagan_app.ml.checkpoint import load_generator, update_card

    generator, card = load_generator(weights_path)
    vocabulary = Vocabulary.from_json(card["vocabulary"])
    with torch.inference_mode():
        result = find_named_sliders(generator, vocabulary, reader, tagger, **options)
    update_card(weights_path, named_sliders=to_card(result, reader))
    return result


def table(result: NamedSliders) -> str:
    """The sliders as a plain-text table (what ``mangagan name-sliders`` prints)."""
    lines = [
        f"{'slider':<24}{'change/unit':>12}{'Spearman':>10}  {'largest side effect':<28}{'attributes kept ±2':>19}"
    ]
    for s in result.kept:
        m = s.measure
        side = f"{m.worst_side_effect} {m.side_effect_ratio:.2f}×"
        lines.append(
            f"{s.name:<24}{m.change_per_unit:>12.2f}{m.spearman:>10.2f}  {side:<28}{100 * m.attributes_kept:>18.0f}%"
        )
    lines.append(
        f"(a random direction of the same length keeps the attributes of {100 * result.random_attributes_kept:.0f}% "
        "of the faces at ±2)"
    )
    lines += [f"dropped {key}: {why}" for key, why in result.dropped.items()]
    return "\n".join(lines)


def slider_sheet(service, recipe, values: tuple[float, ...] = SLIDER_VALUES) -> np.ndarray:
    """One row per named slider of ``service`` (a GeneratorService), one column per slider value:
    ``recipe`` moved along that slider alone. (rows·(H+2)+2, columns·(W+2)+2, 3) uint8."""
    directions = service.directions
    rows = []
    for index in (i for i in range(len(directions)) if directions.name(i)):
        for value in values:
            sliders = [0.0] * len(directions)
            sliders[index] = value
            rows.append(recipe.with_(sliders=tuple(sliders)))
    return image_grid(service.render(rows), len(values))
