"""``mangagan crop`` and ``mangagan review-export`` end to end."""

from PIL import Image

from mangagan_app.cli import main
from mangagan_app.core.catalogue import Catalogue
from mangagan_app.core.cropping import draw_reference_face


def test_crop_then_export_gives_trainer_folder_when_faces_kept(tmp_path, capsys):
    src, dataset, out = tmp_path / "src", tmp_path / "ds", tmp_path / "train"
    src.mkdir()
    canvas = Image.new("RGB", (400, 240), (220, 230, 240))
    canvas.paste(draw_reference_face(150), (20, 20))
    canvas.paste(draw_reference_face(110), (220, 60))
    canvas.save(src / "page.png")
    (src / "page.txt").write_text("1girl, brown_hair, blue_eyes, long_hair")
    (src / "junk.png").write_bytes(b"nope")

    assert main(["crop", str(src), "--dataset", str(dataset), "--workers", "1", "--size", "128"]) == 0
    printed = capsys.readouterr().out
    assert "faces cropped: 2" in printed and "1 x not an image Pillow can read" in printed

    with Catalogue(dataset) as cat:
        cat.set_decisions(dict.fromkeys(cat.face_ids(), "keep"))
    assert main(["review-export", str(dataset), str(out)]) == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2
    for png in pngs:
        with Image.open(png) as image:
            assert image.size == (128, 128)
        assert png.with_suffix(".txt").read_text().strip() == "brown_hair, long_hair, blue_eyes"


def test_review_export_fails_and_writes_nothing_when_nothing_is_kept(tmp_path, capsys):
    Catalogue(tmp_path / "ds").close()
    assert main(["review-export", str(tmp_path / "ds"), str(tmp_path / "out")]) == 1
    assert "holds no crops yet" in capsys.readouterr().err and not (tmp_path / "out").exists()
