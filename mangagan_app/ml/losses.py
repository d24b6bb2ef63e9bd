"""GAN losses: non-saturating DCGAN, hinge, DRAGAN's gradient penalty, the masked attribute loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mangagan_app.core.attributes import Vocabulary


def d_adversarial(real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
    """Discriminator loss: softplus(-D(real)) + softplus(D(fake)) (= BCE with labels 1/0)."""
    return F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()


def g_adversarial(fake_logit: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: softplus(-D(G(z)))."""
    return F.softplus(-fake_logit).mean()


def d_hinge(real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
    """Hinge discriminator loss (SNGAN, BigGAN): relu(1 - D(real)) + relu(1 + D(fake))."""
    return F.relu(1.0 - real_logit).mean() + F.relu(1.0 + fake_logit).mean()


def g_hinge(fake_logit: torch.Tensor) -> torch.Tensor:
    """Hinge generator loss: -D(G(z))."""
    return -fake_logit.mean()


# loss name → (D's adversarial loss, G's); "dragan" adds its penalty to the dcgan pair.
ADVERSARIAL = {
    "dcgan": (d_adversarial, g_adversarial),
    "dragan": (d_adversarial, g_adversarial),
    "hinge": (d_hinge, g_hinge),
}


def dragan_penalty(
    discriminator,
    real: torch.Tensor,
    cond: torch.Tensor,
    mask: torch.Tensor,
    generator: torch.Generator | None = None,
    c: float = 0.5,
) -> torch.Tensor:
    """DRAGAN (Kodali et al. 2017): (‖∇D(x̂)‖ − 1)² at points x̂ perturbed around real data.

    x̂ = x + α·δ with δ ~ U[0,1)·c·std(x) and α ~ U[0,1): the penalty keeps D smooth near
    the data manifold, which is where mode collapse starts.
    """
    std = real.std()
    delta = torch.rand(real.shape, generator=generator, device=real.device) * c * std
    alpha = torch.rand((real.shape[0], 1, 1, 1), generator=generator, device=real.device)
    x_hat = (real + alpha * delta).detach().requires_grad_(True)
    logit, _ = discriminator(x_hat, cond, mask)
    (grad,) = torch.autograd.grad(logit.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def attribute_loss(
    aux_logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, vocabulary: Vocabulary
) -> torch.Tensor:
    """Masked auxiliary-classifier loss: cross-entropy per exclusive group, BCE per free tag.

    Rows whose label is unknown (mask 0 over that group or tag) add nothing, so images
    without tags do not teach the classifier anything false.
    """
    total = aux_logits.new_zeros(())
    start = 0
    for group in vocabulary.groups:
        n = len(group.values)
        logits = aux_logits[:, start : start + n]
        tgt, known = target[:, start : start + n], mask[:, start : start + n]
        if group.exclusive:
            rows = known[:, 0] > 0
            if rows.any():
                ce = F.cross_entropy(logits[rows], tgt[rows].argmax(dim=1), reduction="sum")
                total = total + ce / aux_logits.shape[0]
        else:
            bce = F.binary_cross_entropy_with_logits(logits, tgt, reduction="none") * known
            total = total + bce.sum() / aux_logits.shape[0]
        start += n
    return total
