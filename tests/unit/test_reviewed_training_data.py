from mangagan_app.config import CropConfig
from mangagan_app.core.catalogue import Catalogue
from mangagan_app.core.cropping.pipeline import crop_sources
from mangagan_app.ml.dataset import load_face_folder


def test_training_reads_only_kept_crops_when_given_a_reviewed_dataset_folder(tmp_path, three_face_art):
    dataset = tmp_path / "dataset"
    summary = crop_sources([three_face_art], dataset, CropConfig(size=64, workers=1))
    with Catalogue(dataset) as catalogue:
        ids = catalogue.face_ids()
        assert len(ids) == summary.faces >= 2
        catalogue.set_decisions({ids[0]: "keep", **{i: "reject" for i in ids[1:]}})

    faces = load_face_folder(dataset, 64)
    assert len(faces) == 1
    assert faces.images.shape[1:] == (3, 64, 64)
    brown = faces.vocabulary.offset("hair_colour") + faces.vocabulary.group("hair_colour").values.index("brown")
    assert faces.cond[0, brown] == 1.0
