"""benchmarks/detector_colours.py: its sidecar parsing, scoring and reading of a tar or folder."""

import importlib.util
import io
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from mangagan_app.core.attributes import ConflictingTagsError
from mangagan_app.core.cropping import draw_reference_face

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling real_faces_data
    try:
        spec = importlib.util.spec_from_file_location("detector_colours", BENCHMARKS / "detector_colours.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("detector_colours", None)
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture
def face_folder(tmp_path) -> Path:
    """Three reference faces: one tagged, one tagged with eyes outside the vocabulary, one without a sidecar."""
    folder = tmp_path / "set" / "tagged-faces"
    folder.mkdir(parents=True)
    buffer = io.BytesIO()
    draw_reference_face(96).save(buffer, "JPEG", quality=95)
    for face_id, text in ((3, "1girl, brown_hair, blue_eyes"), (10, "1girl, gray_hair, gray_eyes"), (20, None)):
        (folder / f"{face_id}.jpg").write_bytes(buffer.getvalue())
        if text is not None:
            (folder / f"{face_id}.txt").write_text(text)
    return folder


def test_sidecar_colours_reports_grey_eyes_apart_when_the_vocabulary_lacks_them(bench):
    colours, off_vocabulary = bench.sidecar_colours("1girl, gray_hair, gray_eyes")
    assert colours == {"hair_colour": "grey"}
    assert off_vocabulary == ["gray_eyes"]


def test_sidecar_colours_raises_when_two_hair_colours_are_named(bench):
    with pytest.raises(ConflictingTagsError):
        bench.sidecar_colours("blue_hair, red_hair")


def test_score_group_counts_undetected_faces_as_tagged_but_not_scored(bench):
    pairs = [("blue", "blue"), ("blue", "silver"), ("blue", "silver"), ("blue", None), ("red", "pink")]
    scores = bench.score_group(pairs)
    assert scores["overall"] == {
        "tagged": 5,
        "detected": 4,
        "correct": 1,
        "accuracy": 0.25,
        "most_common_wrong": ["silver", 2],
        "always_most_common": ["blue", 0.75],
    }
    assert scores["per_colour"]["blue"]["accuracy"] == round(1 / 3, 4)
    assert scores["per_colour"]["red"]["most_common_wrong"] == ["pink", 1]
    assert scores["confusion"] == {"blue": {"silver": 2, "blue": 1}, "red": {"pink": 1}}


def test_tagged_faces_reads_a_tar_like_its_folder_when_given_either(bench, face_folder, tmp_path):
    archive = tmp_path / "set.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(face_folder, arcname=face_folder.name)
    before = sorted(p.name for p in face_folder.iterdir())

    from_folder, counts = bench.tagged_faces(face_folder.parent)  # the folder holding only the set's folder
    from_tar, tar_counts = bench.tagged_faces(archive)

    assert from_folder == from_tar
    assert counts == tar_counts
    assert [(f.face_id, f.hair_colour, f.eye_colour) for f in from_tar] == [(3, "brown", "blue"), (10, "grey", None)]
    assert counts["no sidecar"] == 1
    assert counts["tag outside the vocabulary: gray_eyes"] == 1
    assert sorted(p.name for p in face_folder.iterdir()) == before


def test_read_task_gives_the_apps_colour_tags_when_the_face_is_found(bench, face_folder):
    image = (face_folder / "3.jpg").read_bytes()
    blank = io.BytesIO()
    Image.new("RGB", (96, 96), (255, 255, 255)).save(blank, "JPEG")
    found, missed = bench.read_task([(3, image), (4, blank.getvalue())], None)
    assert found["hits"] == 1
    assert found["hair_colour"] == "brown"  # the reference face's hair is (90, 60, 40)
    assert found["eye_colour"] in bench.VOCABULARY.group("eye_colour").values
    assert missed == {"id": 4, "hits": 0, "hair_colour": None, "eye_colour": None}
