"""Cropping with the real animeface detector: geometry, tags, the run, bad input, resume."""

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mangagan_app.config import CropConfig
from mangagan_app.core.catalogue import Catalogue
from mangagan_app.core.cropping import detect_faces_multiscale, draw_reference_face
from mangagan_app.core.cropping.geometry import crop_square, cut_square, detection_scales, fit_square, same_face
from mangagan_app.core.cropping.pipeline import crop_sources, export_kept, find_images
from mangagan_app.core.cropping.tags import face_tags, nearest_colour, parse_sidecar, read_sidecar_tags
from mangagan_app.core.sketchbook import render_face, sample_attributes

TILES = (128, 160, 200)


def make_scene(seed: int, tiles=TILES):
    """A 520x300 canvas with one sketchbook face per tile size; returns (image, tile boxes, attributes)."""
    rng = np.random.default_rng(seed)
    canvas = Image.new("RGB", (20 + sum(tiles) + 10 * len(tiles), 300), (230, 225, 215))
    boxes, attrs, x = [], [], 10
    for size in tiles:
        a = sample_attributes(rng)
        canvas.paste(render_face(a, rng, size), (x, 10))
        boxes.append((x, 10, size, size))
        attrs.append(a)
        x += size + 10
    return canvas, boxes, attrs


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def small_cfg(**kw) -> CropConfig:
    return CropConfig(**{"workers": 1, **kw})


# ---- geometry ------------------------------------------------------------------------
def test_crop_square_holds_the_box_with_margin_when_lifted():
    x, y, side, side2 = crop_square((100, 100, 50, 50), margin=0.4, lift=0.15)
    assert side == side2 == 90
    assert x <= 100 and x + side >= 150 and y < 100 and y + side >= 150


def test_fit_square_shifts_inside_when_face_touches_border():
    assert fit_square((-10, -5, 60, 60), 200, 100) == (0, 0, 60, 60)
    assert fit_square((180, 70, 60, 60), 200, 100) == (140, 40, 60, 60)


def test_cut_square_pads_with_edge_pixels_when_square_exceeds_image():
    image = Image.new("RGB", (40, 20), (10, 200, 30))
    crop = cut_square(image, fit_square((0, -10, 40, 40), 40, 20), 64)
    assert crop.size == (64, 64)
    assert crop.getpixel((0, 0)) == (10, 200, 30)  # no black or white frame


def test_detection_scales_go_down_the_pyramid_when_image_is_big():
    scales = detection_scales(2048, 1536, min_face=48, detect_face_px=52, pyramid_step=2.0)
    assert scales[0] == 1.0 and scales[1] == 0.5 and 1536 * scales[-1] >= 64
    big_faces = detection_scales(2048, 1536, min_face=96, detect_face_px=48, pyramid_step=2.0)
    assert big_faces[0] == 0.5


def test_same_face_when_one_box_holds_the_other_centre():
    assert same_face((0, 0, 100, 100), (30, 30, 60, 60))
    assert not same_face((0, 0, 100, 100), (200, 0, 100, 100))


# ---- the real detector ------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_multiscale_detection_finds_every_face_when_scene_has_three_sizes(seed):
    image, tiles, _ = make_scene(seed)
    faces = detect_faces_multiscale(
        image, detection_scales(*image.size, min_face=48, detect_face_px=52, pyramid_step=2.0)
    )
    for x, y, w, h in tiles:
        assert any(x <= f.box[0] + f.box[2] / 2 < x + w and y <= f.box[1] + f.box[3] / 2 < y + h for f in faces)
    assert len(faces) == len(tiles)


# ---- tags ---------------------------------------------------------------------------------
def test_sidecar_tags_carry_to_faces_when_kohya_txt_present(tmp_path):
    sidecar = tmp_path / "a.txt"
    sidecar.write_text("1girl, solo, Blue Hair, red_eyes, (smile:1.2), scenery, kurumi_\\(date_a_live\\), highres")
    tags, origin = face_tags(parse_sidecar(read_sidecar_tags(sidecar)), (0, 0, 0), (0, 0, 0))
    assert origin == "sidecar"
    # the app's tags first; the artist's own follow (--vocabulary auto learns them), meta tags do not
    assert tags == ["blue_hair", "red_eyes", "smile", "scenery", "kurumi_(date_a_live)"]


def test_detector_picks_among_named_colours_when_sidecar_names_two(tmp_path):
    sidecar = tmp_path / "a.png.json"
    sidecar.write_text(json.dumps({"tag_string": "2girls blonde_hair black_hair blue_eyes"}))
    parsed = parse_sidecar(read_sidecar_tags(sidecar))
    assert parsed.ambiguous == {"hair_colour": ("blonde", "black")}
    tags, origin = face_tags(parsed, (30, 30, 40), (50, 90, 200))
    assert "black_hair" in tags and "blue_eyes" in tags and origin == "sidecar+detector"


def test_colour_mapping_names_reference_face_colours_when_no_sidecar():
    # draw_reference_face paints brown hair and blue eyes.
    face = detect_faces_multiscale(draw_reference_face(160), [1.0])[0]
    assert face_tags(None, face.hair_rgb, face.eye_rgb) == (["brown_hair", "blue_eyes"], "detector")
    assert nearest_colour((20, 21, 25), "hair_colour") == "black"
    assert nearest_colour((90, 14, 16), "eye_colour", candidates=["red", "blue"]) == "red"


# ---- the run ------------------------------------------------------------------------------
@pytest.fixture()
def scenes(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    make_scene(0)[0].save(src / "scene0.png")
    make_scene(1)[0].save(src / "sub" / "scene1.jpg", quality=95)
    (src / "scene0.txt").write_text("1girl, aqua_hair, green_eyes")
    return src


def test_crop_run_writes_crops_and_rows_when_sources_are_good(scenes, tmp_path):
    before = {p: sha(p) for p in scenes.rglob("*") if p.is_file()}
    dataset = tmp_path / "dataset"
    summary = crop_sources([scenes], dataset, small_cfg(size=64))
    assert summary.processed == 2 and summary.faces == 6 and not summary.errors
    with Catalogue(dataset) as cat:
        faces = cat.faces(cat.face_ids(order="source"))
        assert len(faces) == 6
        for face in faces.values():
            with Image.open(dataset / face.crop_file) as crop:
                assert crop.size == (64, 64)
            assert face.decision == "unreviewed"
        by_source = {Path(f.source_path).name: f for f in faces.values()}
        assert by_source["scene0.png"].tags == ("aqua_hair", "green_eyes")
        assert by_source["scene1.jpg"].tags_source == "detector"
        recorded = cat.source_hashes()
    # The user's files: same bytes, no new files among them, hashes recorded.
    assert {p: sha(p) for p in scenes.rglob("*") if p.is_file()} == before
    assert recorded == {str(p): h for p, h in before.items() if p.suffix != ".txt"}


def test_rerun_skips_done_sources_when_nothing_changed(scenes, tmp_path):
    dataset = tmp_path / "dataset"
    crop_sources([scenes], dataset, small_cfg())
    again = crop_sources([scenes], dataset, small_cfg())
    assert (again.skipped, again.processed, again.faces) == (2, 0, 0)


def test_interrupted_run_resumes_with_the_rest_when_started_again(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        make_scene(i, tiles=(128,))[0].save(src / f"s{i}.png")
    dataset = tmp_path / "dataset"
    done: list[int] = []
    first = crop_sources(
        [src], dataset, small_cfg(), progress=lambda d, t, p: done.append(d), should_stop=lambda: len(done) >= 1
    )
    assert first.stopped and 1 <= first.processed < 4
    with Catalogue(dataset) as cat:
        assert cat.source_status()["pending"] == 4 - first.processed
    second = crop_sources([src], dataset, small_cfg())
    assert second.processed == 4 - first.processed and not second.stopped
    with Catalogue(dataset) as cat:
        assert cat.source_status() == {"pending": 0, "done": 4, "error": 0}
        assert len(cat.face_ids()) == 4


def _png_bytes(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", **kw)
    return buf.getvalue()


def test_bad_inputs_become_error_rows_when_the_run_goes_on(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    face, _, _ = make_scene(2, tiles=(160,))
    face.save(src / "good.png")
    (src / "zero.png").write_bytes(b"")
    (src / "notes.jpg").write_text("this is not a picture")
    jpeg = io.BytesIO()
    face.save(jpeg, "JPEG")
    (src / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    png = _png_bytes(face)
    (src / "truncated.png").write_bytes(png[: len(png) // 2])
    Image.new("RGB", (1, 1)).save(src / "one.png")
    Image.new("L", (1500, 1500)).save(src / "bomb.png")  # over the pixel limit set below
    os.symlink(src / "loop.png", src / "loop.png")
    # Odd but valid: converted, not refused.
    face.convert("CMYK").save(src / "cmyk.jpg")
    Image.fromarray(np.asarray(face.convert("L"), np.uint16) * 257).save(src / "sixteen.png")
    face.convert("P").save(src / "palette.png", transparency=0)
    frames = [face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(src / "animated.gif", save_all=True, append_images=frames[1:])
    before = {p.name: sha(p) for p in src.iterdir() if p.is_file() and not p.is_symlink()}

    summary = crop_sources([src], tmp_path / "ds", small_cfg(max_pixels=2_000_000))
    assert summary.processed == 12
    with Catalogue(tmp_path / "ds") as cat:
        errors = {Path(p).name: reason for p, reason in cat.errors()}
    assert errors["zero.png"] == "empty file (0 bytes)"
    assert errors["notes.jpg"] == "not an image Pillow can read"
    assert errors["truncated.jpg"].startswith("truncated or corrupt image")
    assert errors["truncated.png"].startswith("truncated or corrupt image")
    assert errors["one.png"].startswith("image too small")
    assert errors["bomb.png"].startswith("image too large")
    assert errors["loop.png"] == "symlink loop"
    assert set(errors) == {"zero.png", "notes.jpg", "truncated.jpg", "truncated.png", "one.png", "bomb.png", "loop.png"}
    assert summary.faces >= 5  # good, cmyk, 16-bit, palette and the GIF's first frame
    assert {p.name: sha(p) for p in src.iterdir() if p.is_file() and not p.is_symlink()} == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_becomes_error_row_when_permission_denied(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    locked = src / "locked.png"
    make_scene(0, tiles=(128,))[0].save(locked)
    locked.chmod(0)
    try:
        crop_sources([src], tmp_path / "ds", small_cfg())
        with Catalogue(tmp_path / "ds") as cat:
            assert cat.errors() == [(str(locked), "permission denied")]
    finally:
        locked.chmod(0o644)


def test_dataset_folder_inside_sources_is_not_cropped_again_when_searching(tmp_path):
    (tmp_path / "ds" / "crops").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "ds" / "crops" / "x.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert find_images([tmp_path], exclude=tmp_path / "ds") == [tmp_path / "a.png"]


def test_export_writes_kept_crops_with_tag_files_when_reviewed(scenes, tmp_path):
    dataset = tmp_path / "dataset"
    crop_sources([scenes], dataset, small_cfg())
    with Catalogue(dataset) as cat:
        ids = cat.face_ids(order="source")
        previous = cat.set_decisions({ids[0]: "keep", ids[1]: "keep", ids[2]: "reject"})
        assert set(previous.values()) == {"unreviewed"}
        cat.set_decisions({ids[1]: "unreviewed"})  # an undo
    out = tmp_path / "export"
    assert export_kept(dataset, out) == 1
    pngs, txts = sorted(out.glob("*.png")), sorted(out.glob("*.txt"))
    assert len(pngs) == len(txts) == 1 and pngs[0].stem == txts[0].stem
    assert txts[0].read_text().strip() == "aqua_hair, green_eyes"


def test_unreviewed_faces_are_decided_by_likelihood_and_earlier_decisions_kept_when_reviewed_in_bulk(scenes, tmp_path):
    dataset = tmp_path / "dataset"
    crop_sources([scenes], dataset, small_cfg())
    with Catalogue(dataset) as cat:
        ids = cat.face_ids()  # lowest likelihood first
        assert len(ids) >= 3
        likelihood = {i: f.likelihood for i, f in cat.faces(ids).items()}
        cat.set_decisions({ids[-1]: "reject"})  # a decision made in the Dataset tab stays
        middle = likelihood[ids[1]]
        done = cat.decide_unreviewed(keep_from=middle, reject_below=middle)
        assert done == {"keep": len(ids) - 2, "reject": 1}
        decided = {i: f.decision for i, f in cat.faces(ids).items()}
        assert decided[ids[0]] == "reject" and decided[ids[-1]] == "reject"
        assert all(decided[i] == "keep" for i in ids[1:-1])
        with pytest.raises(ValueError, match="overlap"):
            cat.decide_unreviewed(keep_from=0.2, reject_below=0.5)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        export_kept(tmp_path / "typo", tmp_path / "out")
    assert not (tmp_path / "typo").exists() and not (tmp_path / "out").exists()


def test_faces_and_decisions_survive_when_source_folder_is_missing_on_rerun(scenes, tmp_path):
    dataset = tmp_path / "dataset"
    crop_sources([scenes], dataset, small_cfg())
    with Catalogue(dataset) as cat:
        first = cat.face_ids()[0]
        cat.set_decisions({first: "keep"})
    scenes.rename(tmp_path / "unmounted")
    again = crop_sources([scenes], dataset, small_cfg())
    assert again.errors == {"file not found": 1}  # the folder itself, named in the errors
    with Catalogue(dataset) as cat:
        assert len(cat.face_ids()) == 6 and cat.decision_counts()["keep"] == 1


def test_changed_source_is_cropped_again_when_its_file_changes(scenes, tmp_path):
    dataset = tmp_path / "dataset"
    crop_sources([scenes], dataset, small_cfg())
    make_scene(5, tiles=(160,))[0].save(scenes / "scene0.png")
    again = crop_sources([scenes], dataset, small_cfg())
    assert (again.processed, again.faces) == (1, 1)
    with Catalogue(dataset) as cat:
        assert len(cat.face_ids()) == 4
        assert sum(1 for _ in (dataset / "crops").rglob("*.png")) == 4  # the old crops went with their rows


def test_kept_training_items_feed_the_trainer_when_faces_kept(scenes, tmp_path):
    from mangagan_app.core.catalogue import kept_training_items
    from mangagan_app.ml.dataset import faces_from_items

    dataset = tmp_path / "dataset"
    crop_sources([scenes], dataset, small_cfg())
    with Catalogue(dataset) as cat:
        cat.set_decisions(dict.fromkeys(cat.face_ids()[:4], "keep"))
    items = kept_training_items(dataset)
    assert len(items) == 4 and all(path.is_file() for path, _ in items)
    faces = faces_from_items(items, 64)
    assert len(faces) == 4
    with pytest.raises(FileNotFoundError):
        kept_training_items(tmp_path / "nothing-here")


def test_copies_are_flagged_as_near_duplicates_when_an_image_is_cropped_twice(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    image, _, _ = make_scene(3, tiles=(128, 160))
    image.save(src / "a.png")
    image.save(src / "b_copy.jpg", quality=92)  # re-encoded: pixels differ a little
    crop_sources([src], tmp_path / "ds", small_cfg())
    with Catalogue(tmp_path / "ds") as cat:
        faces = cat.faces(cat.face_ids(order="source"))
        dupes = cat.near_duplicates()
    originals = {f.id for f in faces.values() if f.source_path.endswith("a.png")}
    copies = {f.id for f in faces.values() if f.source_path.endswith("b_copy.jpg")}
    assert len(originals) == len(copies) == 2
    assert set(dupes) == copies and set(dupes.values()) == originals
    assert all(faces[i].duplicate_of == dupes[i] for i in copies)
