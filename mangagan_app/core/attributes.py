"""The attribute vocabulary shared by the model, the checkboxes and the tag files.

Tags use Danbooru spelling (``blue_hair``). A vocabulary is a list of groups; an
*exclusive* group holds exactly one value per face (one hair colour), a *free* group
holds any subset (glasses and hat together). The model's condition vector is the
groups' encodings concatenated in vocabulary order: one-hot per exclusive group,
multi-hot for free tags.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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


def normalise_tag(raw: str) -> str:
    """Lower case, trimmed, spaces to underscores (``"Blue Hair "`` → ``blue_hair``)."""
    return re.sub(r"\s+", "_", raw.strip().lower())


VOCABULARY = Vocabulary(
    (
        AttributeGroup("hair_colour", HAIR_COLOURS, exclusive=True, suffix="hair"),
        AttributeGroup("hair_style", HAIR_STYLES, exclusive=True, suffix="hair"),
        AttributeGroup("eye_colour", EYE_COLOURS, exclusive=True, suffix="eyes"),
        AttributeGroup("tags", FREE_TAGS, exclusive=False),
    )
)
