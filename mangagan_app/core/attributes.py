"""The attribute vocabulary shared by the model, the checkboxes and the tag files.

Tags use Danbooru spelling (``blue_hair``). A vocabulary is a list of groups; an
*exclusive* group holds exactly one value per face (one hair colour), a *free* group
holds any subset (glasses and hat together). The model's condition vector is the
groups' encodings concatenated in vocabulary order: one-hot per exclusive group,
multi-hot for free tags.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HAIR_COLOURS = (
    "blonde",
    "brown",
    "black",
    "blue",
    "pink",
    "purple",
    "green",
    "red",
    "silver",
    "white",
    "orange",
    "aqua",
    "grey",
)
HAIR_STYLES = ("long", "short", "twintails", "drill", "ponytail")
EYE_COLOURS = (
    "blue",
    "red",
    "brown",
    "green",
    "purple",
    "yellow",
    "pink",
    "aqua",
    "black",
    "orange",
)
FREE_TAGS = (
    "blush",
    "smile",
    "open_mouth",
    "hat",
    "ribbon",
    "glasses",
    "dark_skin",
    "cat_ears",
    "looking_up",
    "looking_down",
)

# Danbooru spells a few tags differently from the plain "<value>_<group>" rule.
_TAG_OVERRIDES = {
    ("hair_style", "twintails"): "twintails",
    ("hair_style", "ponytail"): "ponytail",
}
# Spellings people type that Danbooru does not use.
_ALIASES = {
    "blond_hair": "blonde_hair",
    "gray_hair": "grey_hair",
    "grey_eyes": "black_eyes",
    "cyan_hair": "aqua_hair",
    "cyan_eyes": "aqua_eyes",
    "twin_tails": "twintails",
    "twintail": "twintails",
    "drills": "drill_hair",
    "twin_drills": "drill_hair",
    "cat_ear": "cat_ears",
    "animal_ears": "cat_ears",
    "smiling": "smile",
    "eyeglasses": "glasses",
    "dark-skinned_female": "dark_skin",
    "dark-skinned_male": "dark_skin",
}
# Tags that carry no attribute but are expected in a tag file.
IGNORED_TAGS = frozenset({"1girl", "1boy", "solo", "portrait", "face", "close-up"})
# Danbooru meta tags (counts, resolution, commentary, site marks): they say how the
# picture was posted, not what a face looks like, so an ``auto`` vocabulary never
# turns them into conditions.
META_TAGS = IGNORED_TAGS | frozenset(
    {
        "1other",
        "2girls",
        "2boys",
        "3girls",
        "multiple_girls",
        "multiple_boys",
        "highres",
        "absurdres",
        "lowres",
        "incredibly_absurdres",
        "commentary",
        "commentary_request",
        "english_commentary",
        "translated",
        "translation_request",
        "bad_id",
        "bad_pixiv_id",
        "bad_twitter_id",
        "official_art",
        "artist_name",
        "signature",
        "watermark",
        "web_address",
        "twitter_username",
        "dated",
        "jpeg_artifacts",
        "md5_mismatch",
        "duplicate",
        "check_commentary",
        "artist_request",
        "character_request",
        "copyright_request",
        "text_focus",
        "general",
        "sensitive",
        "questionable",
        "explicit",
        "safe",
    }
)
# The name of the free group an ``auto`` vocabulary adds for the data's own tags.
OWN_TAGS_GROUP = "your_tags"


@dataclass(frozen=True)
class AttributeGroup:
    """One named group of values; ``exclusive`` means exactly one value per face."""

    name: str
    values: tuple[str, ...]
    exclusive: bool
    suffix: str = ""

    def tag(self, value: str) -> str:
        """The Danbooru tag of ``value`` (``blue`` in hair colour → ``blue_hair``)."""
        if value not in self.values:
            raise KeyError(f"{value!r} is not a value of {self.name}")
        override = _TAG_OVERRIDES.get((self.name, value))
        if override:
            return override
        return f"{value}_{self.suffix}" if self.suffix else value

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").capitalize()


class UnknownTagsError(ValueError):
    """Raised when tag text names tags the vocabulary does not know.

    ``suggestions`` maps each unknown tag to the nearest spellings the vocabulary
    knows (empty when none is close); the message names them.
    """

    def __init__(self, unknown: list[str], suggestions: Mapping[str, list[str]] | None = None):
        self.unknown = unknown
        self.suggestions = dict(suggestions or {})
        named = []
        for tag in unknown:
            near = self.suggestions.get(tag)
            choices = " or ".join([", ".join(near[:-1]), near[-1]] if len(near) > 1 else near)
            named.append(f"{tag} (did you mean {choices}?)" if near else tag)
        super().__init__(("unknown tag: " if len(unknown) == 1 else "unknown tags: ") + ", ".join(named))


class ConflictingTagsError(ValueError):
    """Raised when tag text names two values of one exclusive group."""


@dataclass
class Attributes:
    """The attributes of one face: a value per exclusive group, a set of free tags.

    A missing exclusive value means "unknown" (a tag file that does not say).
    """

    choices: dict[str, str] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)

    def get(self, group: str) -> str | None:
        return self.choices.get(group)

    def has(self, tag: str) -> bool:
        return tag in self.tags

    def to_dict(self) -> dict:
        return {"choices": dict(sorted(self.choices.items())), "tags": sorted(self.tags)}

    @classmethod
    def from_dict(cls, data: Mapping) -> Attributes:
        return cls(dict(data.get("choices", {})), set(data.get("tags", [])))


@dataclass(frozen=True)
class Vocabulary:
    """An ordered list of attribute groups and the condition-vector layout it implies."""

    groups: tuple[AttributeGroup, ...]

    # ---- layout -------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return sum(len(g.values) for g in self.groups)

    def offset(self, group_name: str) -> int:
        start = 0
        for g in self.groups:
            if g.name == group_name:
                return start
            start += len(g.values)
        raise KeyError(group_name)

    def group(self, name: str) -> AttributeGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    @property
    def exclusive_groups(self) -> tuple[AttributeGroup, ...]:
        return tuple(g for g in self.groups if g.exclusive)

    @property
    def free_tags(self) -> tuple[str, ...]:
        return tuple(v for g in self.groups if not g.exclusive for v in g.values)

    def slot_names(self) -> list[str]:
        """The tag of every slot of the condition vector, in order."""
        return [g.tag(v) for g in self.groups for v in g.values]

    # ---- encoding -----------------------------------------------------------------
    def encode(self, attrs: Attributes) -> tuple[np.ndarray, np.ndarray]:
        """Condition vector and known-mask (float32, length ``dim``).

        The mask is 0 over an exclusive group whose value is unknown, so a loss can
        skip labels a tag file did not give. Free tags are always known: absent
        means "not present".
        """
        vec = np.zeros(self.dim, np.float32)
        mask = np.ones(self.dim, np.float32)
        start = 0
        for g in self.groups:
            n = len(g.values)
            if g.exclusive:
                value = attrs.choices.get(g.name)
                if value is None:
                    mask[start : start + n] = 0.0
                else:
                    vec[start + g.values.index(value)] = 1.0
            else:
                for i, v in enumerate(g.values):
                    vec[start + i] = 1.0 if v in attrs.tags else 0.0
            start += n
        return vec, mask

    def decode(self, vec: Iterable[float]) -> Attributes:
        """The most likely attributes of a condition vector or classifier scores."""
        arr = np.asarray(list(vec), np.float32)
        attrs = Attributes()
        start = 0
        for g in self.groups:
            part = arr[start : start + len(g.values)]
            if g.exclusive:
                attrs.choices[g.name] = g.values[int(part.argmax())]
            else:
                attrs.tags.update(v for v, x in zip(g.values, part, strict=True) if x > 0.5)
            start += len(g.values)
        return attrs

    # ---- tags ---------------------------------------------------------------------
    def _tag_index(self) -> dict[str, tuple[AttributeGroup, str]]:
        return {g.tag(v): (g, v) for g in self.groups for v in g.values}

    def to_tags(self, attrs: Attributes, *, leading: Iterable[str] = ("1girl",)) -> list[str]:
        """Danbooru tags in vocabulary order, e.g. ``['1girl', 'blue_hair', ...]``."""
        out = list(leading)
        for g in self.groups:
            if g.exclusive:
                if g.name in attrs.choices:
                    out.append(g.tag(attrs.choices[g.name]))
            else:
                out.extend(g.tag(v) for v in g.values if v in attrs.tags)
        return out

    def parse_tags(self, text: str | Iterable[str], *, strict: bool = True) -> tuple[Attributes, list[str]]:
        """Parse tag text (``"blue_hair, Glasses"``, ``"blue hair"``) into attributes.

        Returns the attributes and the list of tags not in the vocabulary. With
        ``strict`` (the default) unknown tags raise :class:`UnknownTagsError` naming
        them; without it they are returned so that a tag file with extra Danbooru
        tags still gives its known attributes. Two values of one exclusive group
        raise :class:`ConflictingTagsError` in either mode.
        """
        items = re.split(r"[,\n]", text) if isinstance(text, str) else list(text)
        index = self._tag_index()
        attrs = Attributes()
        unknown: list[str] = []
        for raw in items:
            tag = normalise_tag(raw)
            if not tag or tag in IGNORED_TAGS:
                continue
            tag = _ALIASES.get(tag, tag)
            hit = index.get(tag)
            if hit is None:
                unknown.append(raw.strip())
                continue
            group, value = hit
            if group.exclusive:
                previous = attrs.choices.get(group.name)
                if previous is not None and previous != value:
                    raise ConflictingTagsError(
                        f"{group.tag(previous)} and {group.tag(value)} both given; a face has one {group.label.lower()}"
                    )
                attrs.choices[group.name] = value
            else:
                attrs.tags.add(value)
        if strict and unknown:
            raise UnknownTagsError(unknown, {tag: self.nearest_tags(tag) for tag in unknown})
        return attrs, unknown

    def nearest_tags(self, text: str, count: int = 3) -> list[str]:
        """The vocabulary's tags spelled most like ``text`` (``blu_hair`` → ``blue_hair``), best first."""
        tag = normalise_tag(text)
        spellings = {t: t for t in self._tag_index()}
        spellings.update({alias: t for alias, t in _ALIASES.items() if t in spellings})
        near = difflib.get_close_matches(tag, list(spellings), n=count * 2, cutoff=0.6)
        return list(dict.fromkeys(spellings[s] for s in near))[:count]

    def aliases(self, tag: str) -> list[str]:
        """Other spellings that :meth:`parse_tags` reads as ``tag`` (``blond_hair`` for ``blonde_hair``)."""
        return sorted(alias for alias, target in _ALIASES.items() if target == tag)

    def to_json(self) -> list[dict]:
        return [
            {"name": g.name, "values": list(g.values), "exclusive": g.exclusive, "suffix": g.suffix}
            for g in self.groups
        ]

    @classmethod
    def from_json(cls, data: list[dict]) -> Vocabulary:
        return cls(
            tuple(
                AttributeGroup(d["name"], tuple(d["values"]), bool(d["exclusive"]), d.get("suffix", "")) for d in data
            )
        )


_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d*)?$")
_BRACKETS = {"(": ")", "[": "]", "{": "}"}


def normalise_tag(raw: str) -> str:
    """A tag as kohya and Danbooru users write it, in the vocabulary's spelling.

    Lower case, trimmed, spaces to underscores (``"Blue Hair "`` → ``blue_hair``);
    escaped parentheses unescaped (``kurumi_\\(date_a_live\\)`` →
    ``kurumi_(date_a_live)``); emphasis brackets and weights dropped (``(smile:1.2)``,
    ``((smile))``, ``[smile]`` → ``smile``). A Danbooru tag never starts with a
    bracket, so only a tag wrapped whole loses its brackets.
    """
    tag = raw.strip().replace("\\(", "(").replace("\\)", ")")
    while len(tag) >= 2 and _BRACKETS.get(tag[0]) == tag[-1]:
        tag = _WEIGHT.sub("", tag[1:-1].strip()).strip()
    return re.sub(r"\s+", "_", tag.lower())


VOCABULARY = Vocabulary(
    (
        AttributeGroup("hair_colour", HAIR_COLOURS, exclusive=True, suffix="hair"),
        AttributeGroup("hair_style", HAIR_STYLES, exclusive=True, suffix="hair"),
        AttributeGroup("eye_colour", EYE_COLOURS, exclusive=True, suffix="eyes"),
        AttributeGroup("tags", FREE_TAGS, exclusive=False),
    )
)

# An ``auto`` vocabulary's defaults: a tag becomes a condition when at least this many
# faces carry it (fewer cannot teach G anything), and at most this many are added.
AUTO_MIN_FACES = 5
AUTO_MAX_TAGS = 32


@dataclass(frozen=True)
class VocabularyChoice:
    """A vocabulary picked for some data, and the data's tags it leaves out (tag → faces)."""

    vocabulary: Vocabulary
    left_out: dict[str, int]
    # Left out because every face carries them: with no face to contrast, the model draws them
    # always, and a checkbox for one would do nothing.
    on_every_face: tuple[str, ...] = ()

    def left_out_sentence(self, shown: int = 8) -> str:
        """``"school_uniform (120 faces), star_hair_ornament (3), …"``: empty when nothing was left out."""
        items = sorted(self.left_out.items(), key=lambda kv: (-kv[1], kv[0]))
        parts = [f"{tag} ({n} face{'s' if n != 1 else ''})" for tag, n in items[:shown]]
        if len(items) > shown:
            parts.append(f"and {len(items) - shown} more")
        return ", ".join(parts)


def tags_outside(text: str, vocabulary: Vocabulary) -> list[str]:
    """The tags of one tag text that ``vocabulary`` does not know, normalised, meta tags left out."""
    known = vocabulary._tag_index()
    out = []
    for raw in re.split(r"[,\n]", text):
        tag = normalise_tag(raw)
        tag = _ALIASES.get(tag, tag)
        if tag and tag not in META_TAGS and tag not in known:
            out.append(tag)
    return list(dict.fromkeys(out))


def count_tags_outside(texts: Iterable[str | None], vocabulary: Vocabulary) -> dict[str, int]:
    """How many tag texts name each tag ``vocabulary`` does not know."""
    counts: dict[str, int] = {}
    for text in texts:
        for tag in tags_outside(text or "", vocabulary):
            counts[tag] = counts.get(tag, 0) + 1
    return counts


def with_own_tags(base: Vocabulary, tags: Iterable[str]) -> Vocabulary:
    """``base`` and, as free tags of one more group, ``tags`` (a data's own: character names, costumes)."""
    tags = tuple(dict.fromkeys(tags))
    if not tags:
        return base
    return Vocabulary(base.groups + (AttributeGroup(OWN_TAGS_GROUP, tags, exclusive=False),))


def auto_vocabulary(
    texts: Iterable[str | None],
    base: Vocabulary = VOCABULARY,
    *,
    min_faces: int = AUTO_MIN_FACES,
    max_tags: int = AUTO_MAX_TAGS,
) -> VocabularyChoice:
    """``base`` plus the data's most frequent tags outside it, for ``--vocabulary auto``.

    A tag joins when at least ``min_faces`` tag texts name it, most frequent first
    (ties by name), at most ``max_tags``; meta tags (``1girl``, ``highres``…) never do,
    nor a tag every face carries (a folder of one character, each tagged with her name).
    """
    texts = list(texts)
    counts = count_tags_outside(texts, base)
    everywhere = tuple(sorted(tag for tag, n in counts.items() if n == len(texts)))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    chosen = [tag for tag, n in ranked if n >= min_faces and tag not in everywhere][:max_tags]
    left_out = {tag: n for tag, n in counts.items() if tag not in chosen}
    return VocabularyChoice(with_own_tags(base, chosen), left_out, everywhere)


def vocabulary_from_file(path: str | Path) -> Vocabulary:
    """The vocabulary a ``--vocabulary FILE`` names.

    A ``.json`` file is a whole vocabulary (``Vocabulary.to_json()``) or a model card
    holding one under ``vocabulary``; any other file lists tags (one per line or
    comma-separated, ``#`` starts a comment) that join the default vocabulary as free
    tags. Raises ``ValueError`` naming the file and the reason.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the vocabulary file ({exc})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
            return Vocabulary.from_json(data["vocabulary"] if isinstance(data, dict) else data)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a vocabulary or a model card ({type(exc).__name__}: {exc})") from None
    lines = (line.split("#", 1)[0] for line in text.splitlines())
    tags = [t for line in lines for t in tags_outside(line, VOCABULARY)]
    if not tags:
        raise ValueError(f"{path}: names no tag outside the default vocabulary (one tag per line)")
    return with_own_tags(VOCABULARY, tags)


def choose_vocabulary(
    choice: str | Vocabulary, texts: Iterable[str | None], base: Vocabulary = VOCABULARY
) -> VocabularyChoice:
    """The vocabulary a run trains with, and the data's tags it leaves out.

    ``choice``: ``"default"`` (``base``: the app's, or the vocabulary of the model a
    fine-tune starts from), ``"auto"`` (:func:`auto_vocabulary` on ``base``), a path
    (:func:`vocabulary_from_file`) or a :class:`Vocabulary` (a resumed run's own).
    """
    texts = list(texts)
    if isinstance(choice, Vocabulary):
        vocabulary = choice
    elif choice == "default":
        vocabulary = base
    elif choice == "auto":
        return auto_vocabulary(texts, base)
    else:
        vocabulary = vocabulary_from_file(choice)
    return VocabularyChoice(vocabulary, count_tags_outside(texts, vocabulary))
