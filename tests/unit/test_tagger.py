"""The tagger on partially tagged data: which groups it learns, its masked loss and its report."""

import json

import numpy as np
import pytest
import torch

from mangagan_app.cli import main
from mangagan_app.core.attributes import VOCABULARY
from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.ml.dataset import load_face_folder
from mangagan_app.ml.tagger import (
    DEFAULT_TAGGER,
    AttributeTagger,
    TaggerArchitecture,
    TaggerNet,
    accuracy_report,
    known_groups,
    load_tagger,
    tagger_loss,
)

HAIR = slice(VOCABULARY.offset("hair_colour"), VOCABULARY.offset("hair_colour") + 13)
STYLE = slice(VOCABULARY.offset("hair_style"), VOCABULARY.offset("hair_style") + 5)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def colours_only(folder, tagged_every: int) -> None:
    """Make a sketchbook folder look like real data: no metadata, and only every ``tagged_every``-th
    face keeps a sidecar, naming just its hair and eye colour (as Danbooru-style crops do)."""
    (folder / "metadata.jsonl").unlink()
    for i, sidecar in enumerate(sorted(folder.glob("*.txt"))):
        if i % tagged_every:
            sidecar.unlink()
            continue
        keep = [
            t.strip()
            for t in sidecar.read_text().split(",")
            if t.strip().endswith(("_hair", "_eyes")) and t.strip() not in {"long_hair", "short_hair", "drill_hair"}
        ]
        sidecar.write_text(", ".join(["1girl", *keep]) + "\n")


@pytest.fixture(scope="module")
def real_like(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_like")
    for name, seed, count in (("train", 31, 360), ("test", 32, 120)):
        write_sketchbook(root / name, count, size=64, seed=seed, workers=1)
        colours_only(root / name, tagged_every=2)
    return root


def test_known_groups_are_every_group_when_sketchbook_labels_are_complete(tmp_path):
    write_sketchbook(tmp_path / "sk", 40, size=32, seed=3, workers=1)
    faces = load_face_folder(tmp_path / "sk", 32)
    assert known_groups(faces.cond, faces.mask) == ("hair_colour", "hair_style", "eye_colour", "tags")


def test_known_groups_leave_out_untagged_groups_and_never_seen_free_tags_when_data_is_partial(real_like):
    faces = load_face_folder(real_like / "train", 64)
    assert bool((faces.mask[:, VOCABULARY.offset("tags") :] > 0).any())  # free tags look known to the mask...
    assert known_groups(faces.cond, faces.mask) == ("hair_colour", "eye_colour")  # ...but no face has one


def test_masked_loss_ignores_labels_and_logits_of_unknown_groups_when_masked():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, VOCABULARY.dim, generator=gen)
    cond = torch.zeros(6, VOCABULARY.dim)
    cond[:, HAIR.start] = cond[:, STYLE.start] = 1.0
    mask = torch.ones_like(cond)
    assert tagger_loss(logits, cond, mask=mask) == pytest.approx(float(tagger_loss(logits, cond)), rel=1e-6)
    mask[:, STYLE] = 0.0
    mask[3:, HAIR] = 0.0
    other_cond, other_logits = cond.clone(), logits.clone()
    other_cond[:, STYLE] = torch.eye(5)[2]
    other_logits[:, STYLE] += 5.0 * torch.randn(6, 5, generator=gen)
    other_cond[3:, HAIR] = torch.eye(13)[7]
    other_logits[3:, HAIR] -= 3.0
    assert tagger_loss(other_logits, other_cond, mask=mask) == pytest.approx(
        float(tagger_loss(logits, cond, mask=mask)), rel=1e-6
    )
    assert tagger_loss(logits, other_cond, mask=torch.ones_like(cond)) != pytest.approx(
        float(tagger_loss(logits, cond)), rel=1e-3
    )


def test_accuracy_report_counts_only_faces_that_know_a_group_when_masked():
    scores = np.zeros((4, VOCABULARY.dim), np.float32)
    scores[:, HAIR.start] = 1.0  # every face read as the first hair colour
    cond = np.zeros_like(scores)
    cond[:2, HAIR.start] = 1.0  # right for faces 0 and 1 ...
    cond[2:, HAIR.start + 1] = 1.0  # ... wrong for 2 and 3, which do not know their hair colour
    mask = np.zeros_like(scores)
    mask[:2, HAIR] = 1.0
    report = accuracy_report(scores, cond, mask=mask, groups=["hair_colour"])
    assert report["groups"] == {"hair_colour": 1.0}
    assert report["faces_per_group"] == {"hair_colour": 2}
    assert accuracy_report(scores, cond, groups=["hair_colour"])["groups"]["hair_colour"] == 0.5


def test_tagger_trains_on_partial_tags_and_reports_only_the_groups_it_learnt_when_data_is_real_like(
    real_like, tmp_path, capsys
):
    out = tmp_path / "tagger"
    code = main(
        [
            "train-tagger",
            str(real_like / "train"),
            str(real_like / "test"),
            "--out",
            str(out),
            "--epochs",
            "12",
            "--threads",
            "1",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "learning hair_colour, eye_colour from the 180 of 360 faces" in printed
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["known_groups"] == ["hair_colour", "eye_colour"]
    accuracy = card["accuracy_unseen"]
    assert set(accuracy["groups"]) == {"hair_colour", "eye_colour"}
    assert accuracy["faces_per_group"] == {"hair_colour": 60, "eye_colour": 60}  # the tagged half of 120
    assert accuracy["groups"]["hair_colour"] > 0.3  # chance is 1 in 13
    assert card["training"]["labelled_faces"] == 180 and card["training"]["test_kind"] == "folder"
    assert load_tagger(out).known_groups == ("hair_colour", "eye_colour")


def test_train_tagger_refuses_a_folder_without_a_single_known_tag_when_asked(real_like, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    for image in sorted((real_like / "test").glob("*.png"))[:8]:
        (bare / image.name).write_bytes(image.read_bytes())
    assert main(["train-tagger", str(bare), str(real_like / "test"), "--out", str(tmp_path / "t")]) == 1
    assert "nothing to learn" in capsys.readouterr().err


def test_known_groups_of_a_tagger_are_every_group_when_its_card_predates_them():
    tagger = AttributeTagger(TaggerNet(TaggerArchitecture(width=4, feature_dim=8)), {})
    assert tagger.known_groups == tuple(g.name for g in VOCABULARY.groups)


def test_a_tagger_trained_at_128_px_reads_faces_at_128_and_says_so_in_its_card(tmp_path, capsys):
    for name, seed, count in (("train", 41, 130), ("test", 42, 20)):
        write_sketchbook(tmp_path / name, count, size=128, seed=seed, workers=1)
    out = tmp_path / "tagger128"
    args = ["train-tagger", str(tmp_path / "train"), str(tmp_path / "test"), "--out", str(out), "--threads", "1"]
    assert main([*args, "--size", "128", "--epochs", "1"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["input_size"] == 128 and card["architecture"]["input_size"] == 128
    tagger = load_tagger(out)
    assert tagger.input_size == 128
    faces = load_face_folder(tmp_path / "test", 128).images[:4]
    with torch.no_grad():
        _, logits = tagger.net(faces.float().div(127.5).sub(1.0))  # the faces as they are, no resizing
    np.testing.assert_allclose(tagger.logits(faces), logits.numpy(), rtol=1e-5, atol=1e-5)

    capsys.readouterr()
    assert main([*args, "--size", "64", "--init", str(out.with_suffix(".safetensors"))]) == 1
    assert "reads 128-px faces, not --size 64" in capsys.readouterr().err


def test_the_shipped_tagger_whose_card_predates_input_sizes_reads_64_px():
    card = json.loads(DEFAULT_TAGGER.with_suffix(".json").read_text())
    assert "input_size" not in card["architecture"]
    assert load_tagger().input_size == 64
