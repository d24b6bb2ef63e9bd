"""Configuration dataclasses (JSON in, JSON out) and where the app's files live."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path


def _bundle_root() -> Path:
    """The folder holding ``resources/`` and ``weights/``.

    A PyInstaller build unpacks them beside the program (``sys._MEIPASS``); a
    source checkout or editable install has them at the repository root.
    """
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root)
    return Path(__file__).resolve().parent.parent


RESOURCES_DIR = _bundle_root() / "resources"
WEIGHTS_DIR = _bundle_root() / "weights"
APP_ICON = RESOURCES_DIR / "mangagan.png"


@dataclass
class CropConfig:
    """How faces are cut out of illustrations (``mangagan crop`` and the Dataset tab).

    ``margin`` widens the detector's tight face box on each side by that fraction of
    its width so hair and chin are inside; ``lift`` moves the square up by that
    fraction (anime hair sits above the box, the neck below it is not wanted).
    ``min_face`` (source pixels) skips faces that would be upscaled into mush.
    ``detect_face_px`` is the face width the detector is aimed at: each image is
    scaled so faces of ``min_face`` land near it, with further passes at
    ``1 / pyramid_step`` of that scale for bigger faces. ``max_pixels`` refuses
    decompression bombs; ``workers`` 0 means one per CPU core.
    """

    size: int = 64
    margin: float = 0.4
    lift: float = 0.15
    min_face: int = 48
    detect_face_px: int = 52
    pyramid_step: float = 3.0
    max_pixels: int = 64_000_000
    workers: int = 0

    def __post_init__(self) -> None:
        if self.size not in (64, 128):
            raise ValueError(f"crop size must be 64 or 128, not {self.size}")
        if not 0.0 <= self.margin <= 2.0:
            raise ValueError(f"margin must be between 0 and 2, not {self.margin}")
        if self.min_face < 8 or self.detect_face_px < 32:
            raise ValueError("min_face must be >= 8 and detect_face_px >= 32")
        if self.pyramid_step <= 1.0:
            raise ValueError(f"pyramid_step must be > 1, not {self.pyramid_step}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, not {self.workers}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CropConfig:
        """Build from JSON; unknown keys are ignored so older/newer files still load."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


LOSSES = ("dcgan", "hinge", "dragan")
AUGMENTS = ("ada", "fixed", "none")
# The alterations ml.augment can make, in the order it makes them.
AUGMENT_OPERATIONS = ("colour", "translation", "cutout")
G_UPSAMPLES = ("resize", "transpose")
D_NORMS = ("spectral", "none")
# Sizes a tagger or look reader reads faces at, the default first; a 128-px model is read at 128.
TAGGER_INPUT_SIZES = (64, 128)
# What a run saved before each setting existed did: G conditioned at the input only
# (before FiLM), transposed convolutions, no normalisation in D, no augmentation; and
# a run augmented before the alterations could be chosen made all three.
SETTINGS_BEFORE_THEY_EXISTED = {
    "g_conditioning": "input",
    "g_upsample": "transpose",
    "d_norm": "none",
    "augment": "none",
    "augment_operations": "colour,translation,cutout",
}


def parse_augment_operations(text: str) -> tuple[str, ...]:
    """``"cutout, translation"`` → ("translation", "cutout"), in :data:`AUGMENT_OPERATIONS` order.

    Raises ``ValueError`` naming an unknown operation, or when none is named.
    """
    names = {name.strip() for name in text.split(",") if name.strip()}
    if unknown := sorted(names - set(AUGMENT_OPERATIONS)):
        raise ValueError(f"unknown augmentation {', '.join(unknown)}; choose from {', '.join(AUGMENT_OPERATIONS)}")
    if not names:
        raise ValueError(f"name at least one augmentation of {', '.join(AUGMENT_OPERATIONS)}")
    return tuple(name for name in AUGMENT_OPERATIONS if name in names)


@dataclass
class TrainingConfig:
    """How the conditional GAN is trained (``mangagan train`` and the Train tab).

    ``data`` is a folder of face images with kohya ``.txt`` tag sidecars.
    ``resolution`` 64 or 128 (32 for quick tests); ``width`` is D's first / G's last
    channel count. ``conditioning`` (how D judges the condition): ``projection``,
    ``acgan`` or ``both``; ``g_conditioning`` (how G takes it): ``input`` or
    ``film`` (also at every block, see ``ml.networks``). ``loss``:
    ``dcgan`` (non-saturating) or ``dragan`` (adds DRAGAN's gradient penalty with
    weight ``dragan_weight``). ``aux_weight`` scales the attribute-classifier loss.
    Statistics are logged every ``tick_steps`` steps, a preview every
    ``preview_steps``, a checkpoint every ``checkpoint_minutes`` (and every
    ``checkpoint_steps`` when > 0). ``device`` None picks CUDA → MPS → CPU;
    ``threads`` > 0 caps the CPU threads (0: all cores, or all but one beside a GUI —
    on a CPU shared with other busy processes, fewer threads can be much faster).
    ``precision`` "auto" trains under bfloat16 autocast where the hardware does bf16
    natively (recent GPUs, AVX512-BF16/AMX CPUs), else float32.
    ``lr_decay_steps`` > 0 lowers both learning rates linearly to zero over the
    run's last that many steps; ``lr_warmup_steps`` > 0 raises them linearly from
    zero over the first that many (a fine-tune's fresh Adam otherwise moves every
    trained weight by the full rate at once). ``init_from`` (a run folder, checkpoint file or a
    model's ``.safetensors`` that ships its discriminator) starts a new run from its
    G, D and EMA G instead of random weights (fine-tuning, or growing an ``input`` G
    into a ``film`` one), in its architecture; the optimisers and the step count start
    afresh; a ``resolution`` above the model's grows it (its G's blocks kept, a thinner
    block added at the image end, D new: ``ml.networks``), which sets ``width`` and
    ``max_width_factor`` (the deepest layers' channels are at most ``width`` × this).
    ``freeze_d`` > 0 keeps D's first that many blocks as they were (FreezeD).
    ``vocabulary``: ``default`` (the app's, or the vocabulary of the model started
    from), ``auto`` (that plus the data's frequent tags outside it) or a file
    (``core.attributes.vocabulary_from_file``).
    """

    data: str = ""
    resolution: int = 64
    width: int = 32
    z_dim: int = 128
    conditioning: str = "both"
    g_conditioning: str = "film"
    g_upsample: str = "transpose"
    d_norm: str = "spectral"
    loss: str = "dcgan"
    augment: str = "ada"
    augment_p: float = 0.0
    # Not colour: hair and eye colour are conditions, and a recoloured face under its own
    # labels taught D and G the wrong colours (measured on the sketchbook, README).
    augment_operations: str = "translation,cutout"
    ada_target: float = 0.6
    ada_kimg: float = 100.0
    batch: int = 64
    epochs: int = 40
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    aux_weight: float = 1.0
    dragan_weight: float = 10.0
    ema_beta: float = 0.999
    seed: int = 0
    tick_steps: int = 25
    preview_steps: int = 500
    checkpoint_minutes: float = 5.0
    checkpoint_steps: int = 0
    device: str | None = None
    threads: int = 0
    precision: str = "auto"
    leave_core_for_gui: bool = False
    lr_decay_steps: int = 0
    lr_warmup_steps: int = 0
    init_from: str = ""
    vocabulary: str = "default"
    freeze_d: int = 0
    max_width_factor: int = 8

    def __post_init__(self) -> None:
        if not self.vocabulary.strip():
            raise ValueError("vocabulary must be default, auto or a vocabulary file")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0 = automatic), not {self.threads}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, not {self.precision!r}")
        if self.resolution not in (32, 64, 128):
            raise ValueError(f"resolution must be 64 or 128 (32 for tests), not {self.resolution}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, not {self.augment!r}")
        self.augment_operations = ",".join(parse_augment_operations(self.augment_operations))
        if not 0.0 <= self.augment_p <= 1.0:
            raise ValueError(f"augment_p must be between 0 and 1, not {self.augment_p}")
        if not 0.0 < self.ada_target < 1.0 or self.ada_kimg <= 0:
            raise ValueError(
                f"ada_target must be between 0 and 1 ({self.ada_target}) and ada_kimg > 0 ({self.ada_kimg})"
            )
        if self.g_upsample not in G_UPSAMPLES:
            raise ValueError(f"g_upsample must be one of {G_UPSAMPLES}, not {self.g_upsample!r}")
        if self.d_norm not in D_NORMS:
            raise ValueError(f"d_norm must be one of {D_NORMS}, not {self.d_norm!r}")
        if self.conditioning not in ("projection", "acgan", "both"):
            raise ValueError(f"conditioning must be projection, acgan or both, not {self.conditioning!r}")
        if self.g_conditioning not in ("input", "film"):
            raise ValueError(f"g_conditioning must be input or film, not {self.g_conditioning!r}")
        if self.lr_decay_steps < 0 or self.lr_warmup_steps < 0:
            raise ValueError(
                f"lr_decay_steps and lr_warmup_steps must be >= 0, not {self.lr_decay_steps} and {self.lr_warmup_steps}"
            )
        if self.batch < 2 or self.epochs < 1 or self.width < 1:
            raise ValueError("batch must be >= 2, epochs >= 1 and width >= 1")
        if self.tick_steps < 1 or self.preview_steps < 1:
            raise ValueError("tick_steps and preview_steps must be >= 1")
        if self.freeze_d and not self.init_from:
            raise ValueError("freeze_d keeps layers of the model a run starts from: give init_from too")
        # D halves the image per block down to 4×4: 4 blocks at 64 px, 5 at 128 px
        blocks = (self.resolution // 4).bit_length() - 1
        if not 0 <= self.freeze_d <= blocks:
            raise ValueError(f"freeze_d is 0 to {blocks} (D's blocks at {self.resolution} px), not {self.freeze_d}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainingConfig:
        """Build from JSON; unknown keys are ignored so older/newer files still load."""
        known = {f.name for f in fields(cls)}
        # A run saved before a setting existed was trained as the code was then.
        return cls(**{**SETTINGS_BEFORE_THEY_EXISTED, **{k: v for k, v in data.items() if k in known}})
