"""DiffAugment-style augmentation: identity at p = 0, differentiable, seeded, and adaptive."""

import pytest
import torch

from mangagan_app.config import TrainingConfig
from mangagan_app.ml.augment import AdaptiveProbability, _cutout, _translation, augment


def images(n: int = 8, size: int = 32) -> torch.Tensor:
    return torch.rand((n, 3, size, size), generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_augment_returns_the_images_unchanged_when_p_is_zero():
    x = images()
    assert augment(x, 0.0, torch.Generator().manual_seed(1)) is x


def test_augment_alters_every_image_when_p_is_one():
    x = images()
    y = augment(x, 1.0, torch.Generator().manual_seed(1))
    assert y.shape == x.shape
    assert ((y - x).abs().flatten(1).amax(dim=1) > 0.1).all()


def test_augment_passes_gradients_to_its_input_when_p_is_one():
    x = images().requires_grad_(True)
    augment(x, 1.0, torch.Generator().manual_seed(2)).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_augment_gives_the_same_images_when_the_seed_is_the_same():
    x = images()
    a = augment(x, 0.5, torch.Generator().manual_seed(3))
    b = augment(x, 0.5, torch.Generator().manual_seed(3))
    c = augment(x, 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_translation_and_cutout_only_move_or_blank_pixels():
    x = images(4, 16)
    values = set(x.flatten().tolist()) | {0.0}
    for alteration in (_translation, _cutout):
        y = alteration(x, torch.Generator().manual_seed(5))
        assert y.shape == x.shape and set(y.flatten().tolist()) <= values
        assert not torch.equal(y, x)


def test_adaptive_probability_rises_when_d_is_sure_of_real_faces_and_falls_when_not():
    ada = AdaptiveProbability(target=0.6, kimg=1.0, batch=64, interval=4)
    for _ in range(40):
        ada.observe(1.0)
    high = ada.p
    assert high > 0.5
    for _ in range(40):
        ada.observe(0.0)
    assert ada.p < high


def test_adaptive_probability_stays_put_when_not_adaptive():
    fixed = AdaptiveProbability(p=0.3, adaptive=False)
    for _ in range(100):
        fixed.observe(1.0)
    assert fixed.p == 0.3


def test_adaptive_probability_continues_from_its_saved_state():
    ada = AdaptiveProbability(kimg=1.0)
    for _ in range(10):
        ada.observe(1.0)
    again = AdaptiveProbability(kimg=1.0)
    again.load(ada.state())
    ada.observe(1.0)
    again.observe(1.0)
    assert again.p == ada.p


def test_a_fixed_probability_keeps_its_own_value_when_loading_a_saved_adaptive_state():
    ada = AdaptiveProbability(kimg=1.0)
    for _ in range(10):
        ada.observe(1.0)
    fixed = AdaptiveProbability(p=0.1, adaptive=False)
    fixed.load(ada.state())
    assert ada.p > 0.1 and fixed.p == 0.1


def test_augment_keeps_every_colour_when_colour_is_left_out_of_the_operations():
    # Hair and eye colour are conditions: without the colour alteration, D sees only pixels the face has.
    x = images(4, 16)
    values = set(x.flatten().tolist()) | {0.0}
    y = augment(x, 1.0, torch.Generator().manual_seed(6), ("translation", "cutout"))
    assert set(y.flatten().tolist()) <= values and not torch.equal(y, x)
    with_colour = augment(x, 1.0, torch.Generator().manual_seed(6))
    assert not set(with_colour.flatten().tolist()) <= values


def test_augmentation_operations_are_read_in_their_own_order_and_an_unknown_one_is_named():
    assert TrainingConfig(augment_operations="cutout, translation").augment_operations == "translation,cutout"
    with pytest.raises(ValueError, match="unknown augmentation hue; choose from colour, translation, cutout"):
        TrainingConfig(augment_operations="translation,hue")
    with pytest.raises(ValueError, match="at least one"):
        TrainingConfig(augment_operations=" , ")


def test_a_run_augmented_before_the_operations_could_be_chosen_resumes_with_all_three():
    saved = {**TrainingConfig().to_dict(), "augment": "ada"}
    del saved["augment_operations"]
    assert TrainingConfig.from_dict(saved).augment_operations == "colour,translation,cutout"
