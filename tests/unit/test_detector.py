import PIL
import pytest
from PIL import Image

from mangagan_app.core.cropping import detect_faces, detector_self_check, draw_reference_face, to_detector_rgb


def test_detector_finds_reference_face_when_pillow_is_supported():
    # animeface 2.0.3 returns no faces at all under Pillow 12; this is the guard.
    result = detector_self_check()
    assert result.ok, f"{result.message} (Pillow {PIL.__version__})"


def test_detector_box_covers_the_face_when_drawn_at_256_px():
    faces = detect_faces(draw_reference_face(256))
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert 0.3 * 256 < w < 0.7 * 256
    assert x < 128 < x + w and y < 160 < y + h


def test_detector_finds_nothing_when_image_is_blank():
    assert detect_faces(Image.new("RGB", (200, 200), "white")) == []


@pytest.mark.parametrize("mode", ["LA", "I;16", "I", "F", "1", "RGBA", "P", "CMYK", "L"])
def test_detector_accepts_image_when_mode_is_unusual(mode):
    face = draw_reference_face(128)
    converted = face.convert("L").convert(mode) if mode in ("I;16", "I", "F", "1", "LA") else face.convert(mode)
    rgb = to_detector_rgb(converted)
    assert rgb.mode == "RGB" and rgb.size == face.size
    detect_faces(converted)  # must not raise
