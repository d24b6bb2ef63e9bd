"""The generator as a service for the Generate tab and the CLI: recipes in, pixels out.

* :class:`GeneratorService` holds a generator in eval mode with its model card and
  renders :class:`~mangagan_app.core.face_recipe.FaceRecipe` batches to uint8 images.
  The latent fed to G is ``truncation · noise + Σ_k slider_k · σ_k · d_k``.
* :func:`compute_directions` finds the slider directions the GANSpace way
  (Härkönen et al. 2020): PCA of G's early activations over many samples, then
  linear regression of the noise on the PCA coordinates, which carries each
  principal component back to a direction in noise space.
* :func:`morph` is slerp on noise and linear on everything else.

No Qt here; the GUI moves these calls onto a worker thread.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mangagan_app.core.attributes import VOCABULARY, Attributes, Vocabulary
from mangagan_app.core.face_recipe import FaceRecipe, RecipeError, array_sha256, random_attributes
from mangagan_app.core.files import atomic_write_json
from mangagan_app.ml.checkpoint import models_in
from mangagan_app.ml.sampling import complete_condition, image_grid, to_uint8
from mangagan_app.ml.sampling import noise as seeded_noise

log = logging.getLogger(__name__)

DEFAULT_DIRECTIONS = 12
DIRECTION_SAMPLES = 10_000


class _LayerReached(Exception):
    """Raised by the activation hook to stop a forward pass early."""


class ForeignModelError(RecipeError):
    """The face parameters were made with a different model than the one loaded."""


@dataclass(frozen=True)
class SliderDirections:
    """Unit directions in noise space (K, z_dim), each with the σ of the noise along it
    and the share of activation variance its principal component explains."""

    vectors: np.ndarray
    sigmas: np.ndarray
    explained: np.ndarray
    layer: str = "stem"
    samples: int = 0
    # One per direction: an artist's name for a named slider, "" for an unsupervised one.
    names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def sha256(self) -> str:
        return array_sha256(self.vectors, self.sigmas)

    def sha256_of_first(self, count: int) -> str:
        """The fingerprint the first ``count`` directions had on their own: a recipe made before
        named sliders were added after them still moves exactly those."""
        return array_sha256(self.vectors[:count], self.sigmas[:count])

    def name(self, index: int) -> str:
        return self.names[index] if index < len(self.names) else ""

    def with_named(self, named: dict) -> SliderDirections:
        """These directions followed by the named sliders of a card's ``named_sliders`` entry
        (appended, so the indices of recipes made without them keep their meaning)."""
        sliders = named.get("sliders", [])
        if not sliders:
            return self
        vectors = np.asarray([s["vector"] for s in sliders], np.float32)
        return replace(
            self,
            vectors=np.concatenate([self.vectors, vectors]),
            sigmas=np.concatenate([self.sigmas, np.ones(len(sliders), np.float32)]),
            explained=np.concatenate([self.explained, np.zeros(len(sliders), np.float32)]),
            names=(*(self.name(i) for i in range(len(self))), *(str(s["name"]) for s in sliders)),
        )

    def to_card(self) -> dict:
        """JSON for the model card's ``directions`` key (float32 values round-trip exactly)."""
        return {
            "method": "GANSpace PCA of early activations, regressed to noise space",
            "layer": self.layer,
            "samples": self.samples,
            "vectors": [[float(x) for x in row] for row in self.vectors],
            "sigmas": [float(x) for x in self.sigmas],
            "explained_variance": [float(x) for x in self.explained],
        }

    @classmethod
    def from_card(cls, data: dict) -> SliderDirections:
        return cls(
            vectors=np.asarray(data["vectors"], np.float32),
            sigmas=np.asarray(data["sigmas"], np.float32),
            explained=np.asarray(data.get("explained_variance", [0.0] * len(data["sigmas"])), np.float32),
            layer=str(data.get("layer", "")),
            samples=int(data.get("samples", 0)),
        )


def random_conditions(n: int, vocabulary: Vocabulary, rng: np.random.Generator) -> np.ndarray:
    """(n, dim) condition vectors of random complete attribute sets."""
    return np.stack([vocabulary.encode(random_attributes(vocabulary, rng))[0] for _ in range(n)])


def compute_directions(
    generator: torch.nn.Module,
    vocabulary: Vocabulary = VOCABULARY,
    *,
    count: int = DEFAULT_DIRECTIONS,
    samples: int = DIRECTION_SAMPLES,
    seed: int = 0,
    batch: int = 1000,
    layer: str = "stem",
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SliderDirections:
    """GANSpace slider directions of ``generator`` (in eval mode), deterministic for ``seed``.

    Runs ``samples`` random (noise, attributes) pairs through G up to the submodule
    named ``layer``, takes the top ``count`` principal components of those
    activations, and regresses the noise on the component scores to get one noise
    direction per component. Raises ``ValueError`` when G has no such submodule or
    ``count`` exceeds the noise size, ``InterruptedError`` when ``should_stop`` says so.
    """
    # One thread, as for rendering: on this 2-core machine with a training run beside
    # it, two threads took 31 s instead of 2 s for a small model, 49 s instead of 18 s
    # for the shipped size.
    with _torch_threads(1), torch.no_grad():
        return _compute_directions(generator, vocabulary, count, samples, seed, batch, layer, progress, should_stop)


def _compute_directions(
    generator, vocabulary, count, samples, seed, batch, layer, progress, should_stop
) -> SliderDirections:
    z_dim = generator.arch.z_dim
    if not 1 <= count <= z_dim:
        raise ValueError(f"count must be between 1 and {z_dim}, not {count}")
    module = dict(generator.named_modules()).get(layer)
    if module is None:
        raise ValueError(f"the generator has no layer named {layer!r}")
    device = next(generator.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    captured: list[torch.Tensor] = []

    def capture(_module, _inputs, out):
        captured.append(out.flatten(1).cpu())
        raise _LayerReached  # the rest of G is not needed: skipping it makes this ~30× faster

    handle = module.register_forward_hook(capture)
    zs = []
    try:
        for done in range(0, samples, batch):
            if should_stop and should_stop():
                raise InterruptedError("computing slider directions was stopped")
            n = min(batch, samples - done)
            z = torch.randn((n, z_dim), generator=gen)
            cond = torch.from_numpy(random_conditions(n, vocabulary, rng))
            try:
                generator(z.to(device), cond.to(device))
            except _LayerReached:
                pass
            zs.append(z)
            if progress:
                progress(done + n, samples)
    finally:
        handle.remove()
    acts = torch.cat(captured)  # (N, F) float32: float64 would make the SVD 4× slower
    z_all = torch.cat(zs).double()  # (N, z_dim)
    acts -= acts.mean(0, keepdim=True)
    # A full SVD of (10k, 4096) takes about a minute on two cores; the randomised one
    # (Halko et al.) with a few power iterations finds the top components in seconds.
    # Its random projections are seeded so the directions are reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, s, v = torch.svd_lowrank(acts, q=min(count + 16, min(acts.shape)), niter=6)
    components = v[:, :count].T  # (K, F)
    scores = (acts @ components.T).double()  # (N, K) uncorrelated PCA coordinates
    # Least squares z ≈ scores @ U: each column of U is the noise change per unit score.
    u = torch.linalg.lstsq(scores, z_all - z_all.mean(0, keepdim=True)).solution  # (K, z_dim)
    vectors = u / u.norm(dim=1, keepdim=True)
    sigmas = (z_all @ vectors.T).std(0)  # ≈ 1: the noise is isotropic N(0, I)
    explained = (s[:count].double() ** 2) / (acts.double() ** 2).sum()
    return SliderDirections(
        vectors.float().numpy(), sigmas.float().numpy(), explained.float().numpy(), layer=layer, samples=samples
    )


@contextmanager
def _torch_threads(count: int):
    """Run the block with ``count`` intra-op threads on this thread, then restore."""
    previous = torch.get_num_threads()
    if previous != count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if previous != count:
            torch.set_num_threads(previous)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation of two noise vectors (linear when they are parallel)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = float(np.dot(a64, b64) / (np.linalg.norm(a64) * np.linalg.norm(b64) + 1e-12))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        return ((1 - t) * a64 + t * b64).astype(np.float32)
    return ((np.sin((1 - t) * omega) * a64 + np.sin(t * omega) * b64) / np.sin(omega)).astype(np.float32)


def morph(a: FaceRecipe, b: FaceRecipe, t: float) -> FaceRecipe:
    """The face ``t`` of the way from ``a`` (t=0) to ``b`` (t=1): slerp on noise, linear on
    the condition, sliders and truncation. The endpoints are exactly ``a`` and ``b``."""
    if t <= 0.0:
        return a
    if t >= 1.0:
        return b
    n = max(len(a.sliders), len(b.sliders))
    sliders = tuple((1 - t) * a.slider(i) + t * b.slider(i) for i in range(n))
    return FaceRecipe(
        noise=slerp(a.noise, b.noise, t),
        condition=(1 - t) * a.condition + t * b.condition,
        sliders=sliders,
        truncation=(1 - t) * a.truncation + t * b.truncation,
        seed=None,
        model_sha256=a.model_sha256,
        directions_sha256=a.directions_sha256,
    )


def weights_by_preference(folder: str | os.PathLike) -> list[Path]:
    """Every ``*.safetensors`` in ``folder``, in the order the app tries them: the one whose
    card says ``"default": true`` first, then the newest; a damaged first one falls back to the next."""
    candidates = sorted(models_in(folder), key=lambda p: p.stat().st_mtime, reverse=True)

    def is_default(path: Path) -> bool:
        try:
            card = path.with_suffix(".json")
            return card.is_file() and json.loads(card.read_text(encoding="utf-8")).get("default") is True
        except (OSError, json.JSONDecodeError, AttributeError):
            return False

    return sorted(candidates, key=lambda p: not is_default(p))  # stable: newest first otherwise


def find_default_weights(folder: str | os.PathLike) -> Path | None:
    """The model the app opens with: the ``*.safetensors`` whose card says ``"default": true``,
    else the newest one; ``None`` when the folder holds none."""
    candidates = weights_by_preference(folder)
    return candidates[0] if candidates else None


def model_checksums(card: dict) -> set[str]:
    """The sha256 a face made with this model may carry: its weights' own, and those an
    earlier export of the same weights had (``sha256_same_weights``, see ``checkpoint``)."""
    same = card.get("sha256_same_weights")
    return {str(card.get("sha256", ""))} | ({str(s) for s in same} if isinstance(same, list) else set())


def find_weights_by_sha256(folder: str | os.PathLike, sha256: str) -> Path | None:
    """The ``*.safetensors`` in ``folder`` whose card records ``sha256`` (None if none does)."""
    for path in models_in(folder):
        try:
            card = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            if isinstance(card, dict) and sha256 in model_checksums(card):
                return path
        except (OSError, json.JSONDecodeError):
            continue
    return None


class GeneratorService:
    """A loaded generator with its card, rendering face recipes.

    Rendering the same recipe gives the same pixels on the same machine; a batch and
    a single render may differ in the last bit of float maths, so the GUI renders the
    current face alone, always the same way.
    """

    # One thread: a 64-px face is too small to gain from two, and when the cores are
    # busy (a training run) two OpenMP threads spin against each other — measured on
    # this 2-core machine under load: median 12 ms with one thread, 200–540 ms with two.
    # A fixed count also keeps the float sums, hence the pixels, the same everywhere.
    render_threads = 1

    def __init__(
        self, generator: torch.nn.Module, card: dict, *, directions: SliderDirections | None = None, name: str = "model"
    ):
        self.generator = generator.eval()
        self.card = card
        self.name = name
        self.device = next(generator.parameters()).device
        self.z_dim: int = generator.arch.z_dim
        self.resolution: int = generator.arch.resolution
        vocab = card.get("vocabulary")
        self.vocabulary = Vocabulary.from_json(vocab) if vocab else VOCABULARY
        if self.vocabulary.dim != generator.arch.cond_dim:
            raise ValueError(
                f"the card's vocabulary has {self.vocabulary.dim} slots but the generator "
                f"expects {generator.arch.cond_dim}"
            )
        self.sha256: str = str(card.get("sha256", ""))
        if directions is None and card.get("directions"):
            directions = SliderDirections.from_card(card["directions"])
        self.unsupervised = directions if directions is not None else compute_directions(generator, self.vocabulary)
        self.directions = self.unsupervised.with_named(card.get("named_sliders", {}))
        self._vectors = torch.from_numpy(self.directions.vectors * self.directions.sigmas[:, None]).to(self.device)

    @classmethod
    def load(cls, weights_path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> GeneratorService:
        """Load ``weights_path`` (+ its card) on the CPU.

        Slider directions come from the card; a card without them gets them computed
        (a few seconds) and cached in ``cache_dir`` under the weights' sha256.
        Raises ``FileNotFoundError`` / ``ValueError`` from the checkpoint loader.
        """
        from mangagan_app.ml.checkpoint import load_generator

        path = Path(weights_path)
        generator, card = load_generator(path)
        directions = None
        cache = Path(cache_dir) / f"directions-{str(card.get('sha256', 'unknown'))[:16]}.json" if cache_dir else None
        if not card.get("directions") and cache is not None and cache.is_file():
            try:
                directions = SliderDirections.from_card(json.loads(cache.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError) as exc:
                log.warning("ignoring unreadable direction cache %s: %s", cache, exc)
        service = cls(generator, card, directions=directions, name=path.stem)
        if not card.get("directions") and directions is None and cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(cache, service.unsupervised.to_card())
        return service

    # ---- recipes --------------------------------------------------------------------------
    def seed_noise(self, seed: int) -> np.ndarray:
        """The noise vector of ``seed`` (the same as ``mangagan generate --seed``'s first face)."""
        return seeded_noise(1, self.z_dim, seed)[0].numpy()

    def recipe(
        self,
        seed: int,
        attributes: Attributes | None = None,
        *,
        sliders: Sequence[float] = (),
        truncation: float = 1.0,
        noise: np.ndarray | None = None,
    ) -> FaceRecipe:
        """A recipe for this model; exclusive groups ``attributes`` leaves open are drawn from
        ``seed`` the way ``mangagan generate`` draws them, so both give the same face."""
        condition = complete_condition(attributes or Attributes(), np.random.default_rng(seed), self.vocabulary)
        return FaceRecipe(
            noise=self.seed_noise(seed) if noise is None else noise,
            condition=condition,
            sliders=tuple(sliders),
            truncation=truncation,
            seed=seed,
            model_sha256=self.sha256,
            directions_sha256=self.directions.sha256,
        )

    def check(self, recipe: FaceRecipe, source: str = "the file") -> list[str]:
        """Raise :class:`ForeignModelError` if ``recipe`` was made with another model or has
        the wrong sizes; return warnings (e.g. slider directions changed since)."""
        if recipe.model_sha256 and self.sha256 and recipe.model_sha256 not in model_checksums(self.card):
            raise ForeignModelError(
                f"{source} was made with a different model (sha256 {recipe.model_sha256[:12]}…); "
                f"the loaded model is {self.name} ({self.sha256[:12]}…). Load that model to restore it."
            )
        if recipe.noise.shape != (self.z_dim,) or recipe.condition.shape != (self.vocabulary.dim,):
            raise ForeignModelError(
                f"{source} has parameters of a differently shaped model "
                f"(noise {recipe.noise.size}, condition {recipe.condition.size})"
            )
        warnings = []
        made_with = {self.directions.sha256, self.directions.sha256_of_first(len(recipe.sliders))}
        if any(recipe.sliders) and recipe.directions_sha256 and recipe.directions_sha256 not in made_with:
            warnings.append("the slider directions changed since this face was made; it may look different")
        if len(recipe.sliders) > len(self.directions):
            warnings.append(f"{len(recipe.sliders) - len(self.directions)} slider value(s) have no direction here")
        return warnings

    # ---- rendering -------------------------------------------------------------------------
    def latents(self, recipes: Sequence[FaceRecipe]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, z_dim) latents and (B, dim) conditions for ``recipes``."""
        k = len(self.directions)
        noise = torch.from_numpy(np.stack([r.noise for r in recipes]))
        offsets = torch.tensor([[r.slider(i) for i in range(k)] for r in recipes], dtype=torch.float32)
        trunc = torch.tensor([r.truncation for r in recipes], dtype=torch.float32)[:, None]
        z = trunc * noise.to(self.device) + offsets.to(self.device) @ self._vectors
        cond = torch.from_numpy(np.stack([r.condition for r in recipes])).to(self.device)
        return z, cond

    @torch.inference_mode()
    def render(self, recipes: Sequence[FaceRecipe]) -> np.ndarray:
        """(B, H, W, 3) uint8 faces for ``recipes`` (one forward pass on ``render_threads`` threads)."""
        if not recipes:
            return np.zeros((0, self.resolution, self.resolution, 3), np.uint8)
        with _torch_threads(self.render_threads):
            z, cond = self.latents(recipes)
            return to_uint8(self.generator(z, cond))

    def render_image(self, recipe: FaceRecipe) -> Image.Image:
        """One face as a PIL image (rendered alone, as the GUI's canvas does)."""
        return Image.fromarray(self.render([recipe])[0])

    def variations(self, recipe: FaceRecipe, count: int, seed: int, *, strength: float = 0.6) -> list[FaceRecipe]:
        """``count`` relatives of ``recipe``: its noise slerped ``strength`` of the way
        towards fresh noise from ``seed`` (1.0 gives unrelated faces), same attributes."""
        gen = torch.Generator().manual_seed(seed)
        fresh = torch.randn((count, self.z_dim), generator=gen).numpy()
        return [recipe.with_(noise=slerp(recipe.noise, f, strength), seed=None) for f in fresh]


def upscale(image: Image.Image, factor: int, *, smooth: bool) -> Image.Image:
    """``image`` enlarged ``factor``× (1–8) with Lanczos (``smooth``) or nearest neighbour."""
    if not 1 <= factor <= 8:
        raise ValueError(f"scale must be 1 to 8, not {factor}")
    if factor == 1:
        return image.copy()
    resample = Image.Resampling.LANCZOS if smooth else Image.Resampling.NEAREST
    return image.resize((image.width * factor, image.height * factor), resample)


def morph_frames(service: GeneratorService, a: FaceRecipe, b: FaceRecipe, frames: int) -> list[Image.Image]:
    """``frames`` (≥ 2) faces from ``a`` to ``b`` inclusive, evenly spaced in t."""
    if frames < 2:
        raise ValueError(f"a morph needs at least 2 frames, not {frames}")
    return [service.render_image(morph(a, b, i / (frames - 1))) for i in range(frames)]


def gif_bytes(frames: Sequence[Image.Image], *, seconds: float = 2.0, bounce: bool = True) -> bytes:
    """An endlessly looping animated GIF of ``frames`` lasting ``seconds`` one way
    (``bounce`` plays it back again so the loop has no jump)."""
    seq = list(frames) + (list(frames[-2:0:-1]) if bounce else [])
    duration = max(20, round(1000 * seconds / len(frames)))
    buf = io.BytesIO()
    seq[0].save(
        buf, format="GIF", save_all=True, append_images=seq[1:], duration=duration, loop=0, disposal=2, optimize=False
    )
    return buf.getvalue()


def frame_strip(frames: Sequence[Image.Image], pad: int = 2) -> Image.Image:
    """The frames side by side on a white strip (for print or a contact sheet)."""
    return Image.fromarray(image_grid(np.stack([np.asarray(f.convert("RGB")) for f in frames]), len(frames), pad))


def store_directions(
    weights_path: str | os.PathLike,
    *,
    samples: int = DIRECTION_SAMPLES,
    count: int = DEFAULT_DIRECTIONS,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SliderDirections:
    """Compute the slider directions of the exported model at ``weights_path`` and write
    them into its card under ``directions`` (the export step calls this). Raises what
    :func:`~mangagan_app.ml.checkpoint.load_generator` raises."""
    from mangagan_app.ml.checkpoint import load_generator, update_card

    generator, card = load_generator(weights_path)
    vocabulary = Vocabulary.from_json(card["vocabulary"])
    directions = compute_directions(
        generator, vocabulary, samples=samples, count=count, progress=progress, should_stop=should_stop
    )
    update_card(weights_path, directions=directions.to_card())
    return directions
