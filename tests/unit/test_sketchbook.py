import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from mangagan_app.core.attributes import VOCABULARY, Attributes
from mangagan_app.core.cropping import detect_faces
from mangagan_app.core.sketchbook import render_face, sample_attributes
from mangagan_app.core.sketchbook.dataset import png_bytes, sketchbook_face, write_sketchbook
from mangagan_app.core.sketchbook.face import crop_pose, render_look
from mangagan_app.core.sketchbook.look import sample_look
from mangagan_app.core.sketchbook.scenes import face_box, render_scene, scene_rng, write_scenes

BASE = Attributes({"hair_colour": "brown", "hair_style": "long", "eye_colour": "blue"}, set())


def _pixels(attrs: Attributes, seed: int = 3, size: int = 64) -> np.ndarray:
    return np.asarray(render_face(attrs, np.random.default_rng(seed), size), np.int16)


def _variants() -> list[tuple[str, Attributes, Attributes]]:
    """(label, base, changed) for every value of every group of the vocabulary."""
    out = []
    for group in VOCABULARY.exclusive_groups:
        for value in group.values:
            base = Attributes(dict(BASE.choices), set())
            if base.choices[group.name] == value:
                base.choices[group.name] = next(v for v in group.values if v != value)
            out.append((group.tag(value), base, Attributes({**BASE.choices, group.name: value}, set())))
    for tag in VOCABULARY.free_tags:
        out.append((tag, Attributes(dict(BASE.choices), set()), Attributes(dict(BASE.choices), {tag})))
    return out


def test_render_face_gives_identical_bytes_when_seed_repeats():
    first = [png_bytes(sketchbook_face(11, i, 64)[1]) for i in range(5)]
    again = [png_bytes(sketchbook_face(11, i, 64)[1]) for i in range(5)]
    assert first == again
    assert len(set(first)) == 5


def test_render_face_returns_rgb_of_requested_size_when_size_varies():
    for size in (32, 64, 128, 200):
        image = render_face(BASE, np.random.default_rng(0), size)
        assert image.mode == "RGB" and image.size == (size, size)


def test_render_face_raises_when_size_is_tiny_or_group_missing():
    with pytest.raises(ValueError, match="16"):
        render_face(BASE, np.random.default_rng(0), 8)
    with pytest.raises(KeyError):
        render_face(Attributes({"hair_colour": "blue"}, set()), np.random.default_rng(0), 64)


@pytest.mark.parametrize(("label", "base", "changed"), _variants(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_attribute_value_changes_the_pixels_when_rendered(label, base, changed):
    # Same random stream, one attribute different: a visible patch must change. The
    # smallest features (a smile on a 64 px face) cover about ten pixels.
    diff = np.abs(_pixels(changed) - _pixels(base)).max(axis=2)
    assert (diff > 24).sum() >= 10, f"{label} barely changes the face"


def test_sample_attributes_sets_every_exclusive_group_when_drawn_many_times():
    rng = np.random.default_rng(1)
    seen: dict[str, set[str]] = {g.name: set() for g in VOCABULARY.exclusive_groups}
    tags: set[str] = set()
    for _ in range(3000):
        attrs = sample_attributes(rng)
        assert set(attrs.choices) == set(seen)
        assert not {"looking_up", "looking_down"} <= attrs.tags
        for name, value in attrs.choices.items():
            seen[name].add(value)
        tags |= attrs.tags
    for group in VOCABULARY.exclusive_groups:
        assert seen[group.name] == set(group.values)
    assert tags == set(VOCABULARY.free_tags)


def test_synth_writes_same_files_when_worker_count_differs(tmp_path):
    one = write_sketchbook(tmp_path / "one", 40, size=32, seed=5, workers=1)
    two = write_sketchbook(tmp_path / "two", 40, size=32, seed=5, workers=2)
    assert one.written == two.written == 40 and not one.stopped
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir())
    assert len(names) == 40 * 2 + 1
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_sidecar_tags_equal_the_attributes_when_synth_writes_them(tmp_path):
    write_sketchbook(tmp_path, 30, size=32, seed=9, workers=1)
    records = [json.loads(line) for line in (tmp_path / "metadata.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == [f"{i:06d}.png" for i in range(30)]
    for record in records:
        expected = Attributes.from_dict(record)
        assert expected == sketchbook_face(9, record["index"], 32)[0]
        text = (tmp_path / record["file"]).with_suffix(".txt").read_text()
        assert text.startswith("1girl, ")
        parsed, unknown = VOCABULARY.parse_tags(text)
        assert unknown == [] and parsed == expected


def test_synth_keeps_what_it_wrote_when_asked_to_stop(tmp_path):
    calls = []
    result = write_sketchbook(
        tmp_path,
        200,
        size=32,
        seed=1,
        workers=1,
        progress=lambda done, total: calls.append(done),
        should_stop=lambda: bool(calls),
    )
    assert result.stopped and 0 < result.written < 200
    lines = (tmp_path / "metadata.jsonl").read_text().splitlines()
    assert len(lines) == result.written == len(list(tmp_path.glob("*.png")))


def test_detector_finds_sampled_faces_when_rendered_at_128_px():
    found = sum(bool(detect_faces(sketchbook_face(2024, i, 128)[1])) for i in range(20))
    assert found >= 18, f"animeface found only {found} of 20 sketchbook faces"


def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_scene_boxes_lie_inside_the_canvas_when_scenes_are_drawn():
    for index in range(6):
        scene = render_scene(scene_rng(3, index))
        w, h = scene.image.size
        assert 300 <= min(w, h) and max(w, h) <= 3000
        assert 1 <= len(scene.faces) <= 4
        for face in scene.faces:
            x, y, bw, bh = face.box
            assert 40 <= bw <= 640 and x >= -0.1 * bw and y >= -0.1 * bh
            assert x + bw <= w + 0.1 * bw and y + bh <= h + 0.1 * bh
            assert set(face.attributes.choices) == {"hair_colour", "hair_style", "eye_colour"}


def test_true_face_box_matches_the_detector_when_face_is_upright():
    # The box definition is the detector's own: on upright light-skinned crops it must agree.
    ious = []
    for index in range(12):
        rng = np.random.default_rng([31, index])
        attrs = sample_attributes(rng)
        attrs.tags.discard("dark_skin")
        look = dataclasses.replace(sample_look(attrs, rng), roll=0.0)
        found = detect_faces(render_look(attrs, look, 128))
        truth = face_box(crop_pose(128, look), look)
        ious.append(max((_iou(truth, f.box) for f in found), default=0.0))
    assert sum(i >= 0.5 for i in ious) >= 11, ious
    assert float(np.median(ious)) > 0.7, ious


def test_synth_scenes_writes_images_and_manifest_when_run(tmp_path):
    result = write_scenes(tmp_path, 2, seed=4, workers=1)
    manifest = json.loads((tmp_path / "scenes.json").read_text())
    assert result.written == 2 and len(manifest["scenes"]) == 2
    for record in manifest["scenes"]:
        with Image.open(tmp_path / record["file"]) as image:
            assert image.size == (record["width"], record["height"])
            assert image.format == record["format"].upper()
        assert record["faces"] and all(len(f["box"]) == 4 for f in record["faces"])
