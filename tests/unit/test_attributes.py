import pytest

from mangagan_app.core.attributes import (
    VOCABULARY,
    Attributes,
    ConflictingTagsError,
    UnknownTagsError,
    Vocabulary,
)


def test_vocabulary_has_the_makegirlsmoe_set_and_the_brief_tags():
    assert len(VOCABULARY.group("hair_colour").values) == 13
    assert len(VOCABULARY.group("eye_colour").values) == 10
    assert set(VOCABULARY.group("hair_style").values) == {"long", "short", "twintails", "drill", "ponytail"}
    for tag in ("cat_ears", "looking_up", "looking_down", "glasses", "smile", "dark_skin"):
        assert tag in VOCABULARY.free_tags


def test_parse_tags_accepts_usual_spellings_when_mixed_case_and_spaces():
    attrs, unknown = VOCABULARY.parse_tags("1girl, Short Hair, blue_hair,glasses\ncat ears, looking_up, SMILE")
    assert unknown == []
    assert attrs.choices == {"hair_colour": "blue", "hair_style": "short"}
    assert attrs.tags == {"glasses", "cat_ears", "looking_up", "smile"}


def test_parse_tags_maps_aliases_when_spelled_the_american_way():
    attrs, _ = VOCABULARY.parse_tags(["gray hair", "blond_hair"][:1] + ["twin tails"])
    assert attrs.choices == {"hair_colour": "grey", "hair_style": "twintails"}


def test_parse_tags_rejects_unknown_tags_when_strict_naming_them():
    with pytest.raises(UnknownTagsError) as err:
        VOCABULARY.parse_tags("blue_hair, wings, laser_eyes")
    assert err.value.unknown == ["wings", "laser_eyes"]
    assert "wings" in str(err.value) and "laser_eyes" in str(err.value)


def test_parse_tags_returns_unknown_tags_when_not_strict():
    attrs, unknown = VOCABULARY.parse_tags("blue_hair, wings", strict=False)
    assert attrs.choices == {"hair_colour": "blue"} and unknown == ["wings"]


def test_parse_tags_refuses_two_hair_colours_when_group_is_exclusive():
    with pytest.raises(ConflictingTagsError, match="blue_hair and red_hair"):
        VOCABULARY.parse_tags("blue_hair, red_hair")


def test_encode_decode_round_trip_when_all_groups_known():
    attrs = Attributes({"hair_colour": "pink", "hair_style": "drill", "eye_colour": "aqua"}, {"hat", "blush"})
    vec, mask = VOCABULARY.encode(attrs)
    assert vec.shape == (VOCABULARY.dim,) and mask.min() == 1.0
    assert VOCABULARY.decode(vec) == attrs


def test_encode_masks_group_when_value_unknown():
    vec, mask = VOCABULARY.encode(Attributes({"hair_colour": "red"}, set()))
    eyes = VOCABULARY.offset("eye_colour")
    assert mask[eyes : eyes + 10].sum() == 0
    assert mask[VOCABULARY.offset("hair_colour")] == 1


def test_tags_round_trip_when_written_and_parsed():
    attrs = Attributes({"hair_colour": "silver", "hair_style": "ponytail", "eye_colour": "red"}, {"ribbon"})
    tags = VOCABULARY.to_tags(attrs)
    assert tags[0] == "1girl" and "ponytail" in tags and "silver_hair" in tags
    assert VOCABULARY.parse_tags(", ".join(tags))[0] == attrs


def test_vocabulary_json_round_trip():
    assert Vocabulary.from_json(VOCABULARY.to_json()) == VOCABULARY


def test_unknown_tags_name_the_nearest_spellings_when_mistyped():
    with pytest.raises(UnknownTagsError) as err:
        VOCABULARY.parse_tags("blu_hair, glases, wings")
    assert err.value.suggestions["blu_hair"][0] == "blue_hair"
    assert err.value.suggestions["glases"] == ["glasses"] and err.value.suggestions["wings"] == []
    assert "blu_hair (did you mean blue_hair, blonde_hair or black_hair?)" in str(err.value)
    assert str(err.value).startswith("unknown tags: ") and str(err.value).endswith(", wings")


def test_aliases_list_the_other_spellings_of_a_tag_when_asked():
    assert VOCABULARY.aliases("blonde_hair") == ["blond_hair"]
    assert VOCABULARY.aliases("cat_ears") == ["animal_ears", "cat_ear"] and VOCABULARY.aliases("smile") == ["smiling"]
    assert VOCABULARY.nearest_tags("gray hair")[0] == "grey_hair"  # an alias leads to its tag
