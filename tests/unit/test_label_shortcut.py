"""D must tell real from fake by the image alone, never by which labels are known.

Real faces carry their own known-masks (most real art is tagged partly or not at
all); fakes are judged with the mask of a random real face (``sample_labels``). A D
shown only constant images then has nothing to separate real from fake batches,
whereas with fully known fakes (the rule before) it separates them at once.
"""

import numpy as np
import pytest
import torch

from mangagan_app.core.attributes import VOCABULARY
from mangagan_app.core.sketchbook.dataset import write_sketchbook
from mangagan_app.ml import losses
from mangagan_app.ml.dataset import load_face_folder
from mangagan_app.ml.networks import Architecture, Discriminator

SIZE = 32


@pytest.fixture(scope="module")
def partly_tagged(tmp_path_factory):
    """Sketchbook faces tagged like real art: a third know hair and eye colour only, the rest nothing."""
    folder = tmp_path_factory.mktemp("partly_tagged")
    write_sketchbook(folder, 96, size=SIZE, seed=4, workers=1)
    colours = {group.tag(v) for group in map(VOCABULARY.group, ("hair_colour", "eye_colour")) for v in group.values}
    for i, sidecar in enumerate(sorted(folder.glob("*.txt"))):
        tags = [t.strip() for t in sidecar.read_text(encoding="utf-8").split(",")]
        kept = [t for t in tags if t in colours] if i % 3 == 0 else []
        sidecar.write_text(", ".join(kept), encoding="utf-8")
    return load_face_folder(folder, SIZE)


def _separation(faces, fake_labels, steps: int = 150) -> float:
    """Train a D on constant images, real labels vs ``fake_labels(n, g)``; its accuracy on fresh batches."""
    torch.manual_seed(0)
    d = Discriminator(Architecture(SIZE, 4, 128, VOCABULARY.dim, "both"))
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    blank = torch.zeros(32, 3, SIZE, SIZE)
    g = torch.Generator().manual_seed(1)

    def batches():
        rows = torch.randint(len(faces), (32,), generator=g)
        fake_cond, fake_mask = fake_labels(32, g)
        return (faces.cond[rows], faces.mask[rows]), (fake_cond, fake_mask)

    for _ in range(steps):
        (rc, rm), (fc, fm) = batches()
        loss = losses.d_adversarial(d(blank, rc, rm)[0], d(blank, fc, fm)[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    correct = []
    with torch.no_grad():
        for _ in range(10):
            (rc, rm), (fc, fm) = batches()
            correct.append((d(blank, rc, rm)[0] > 0).float().mean().item())
            correct.append((d(blank, fc, fm)[0] <= 0).float().mean().item())
    return float(np.mean(correct))


def test_d_cannot_tell_real_from_fake_by_labels_when_fakes_take_real_masks(partly_tagged):
    assert (partly_tagged.mask.sum(dim=1) == 0).float().mean() > 0.5  # mostly untagged, like real art
    accuracy = _separation(partly_tagged, partly_tagged.sample_labels)
    assert accuracy < 0.6


def test_d_separates_real_from_fake_by_labels_alone_when_fakes_are_fully_known(partly_tagged):
    # The rule before: fakes judged as if every label were known. The test above must be able to fail.
    def fully_known(n, g):
        cond = partly_tagged.sample_conditions(n, g)
        return cond, torch.ones_like(cond)

    assert _separation(partly_tagged, fully_known) > 0.9


def test_fake_labels_match_the_real_label_distribution_when_masked(partly_tagged):
    cond, mask = partly_tagged.sample_labels(20000, torch.Generator().manual_seed(2))
    seen_fake = (cond * mask).mean(dim=0)
    seen_real = (partly_tagged.cond * partly_tagged.mask).mean(dim=0)
    assert torch.allclose(seen_fake, seen_real, atol=0.02)
    assert torch.allclose(mask.mean(dim=0), partly_tagged.mask.mean(dim=0), atol=0.02)


def test_known_columns_cover_only_what_some_face_knows(partly_tagged):
    known = partly_tagged.known_columns
    hair = VOCABULARY.offset("hair_colour")
    style = VOCABULARY.offset("hair_style")
    assert known[hair] == 1.0 and known[style] == 0.0
