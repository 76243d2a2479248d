"""Adversarial losses for the enhancement GAN, with pix2pix's L1 reconstruction term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MODES = ("bce", "lsgan")


class AdversarialLoss(nn.Module):
    """GAN losses on discriminator logits (any shape, e.g. PatchGAN maps).

    Args:
        mode: "bce" — the non-saturating loss of Goodfellow et al. (the generator maximises
            log D(G(x)) instead of minimising log(1 - D(G(x))), which saturates early in
            training); "lsgan" — least squares (Mao et al.) on the raw scores, targets 1 and 0.
        l1_weight: weight of the L1 reconstruction term ``|G(x) - y|`` added to the generator
            loss when the target image is given (pix2pix uses 100).

    Example:
        >>> loss = AdversarialLoss("bce", l1_weight=100.0)
        >>> d_loss = loss.discriminator(real_logits, fake_logits.detach())
        >>> g_loss = loss.generator(fake_logits, fake=enhanced, target=clean)
    """

    def __init__(self, mode: str = "bce", l1_weight: float = 100.0) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if l1_weight < 0:
            raise ValueError(f"l1_weight: expected >= 0, got {l1_weight}")
        self.mode, self.l1_weight = mode, l1_weight

    def _against(self, logits: Tensor, real: bool) -> Tensor:
        target = torch.full_like(logits, 1.0 if real else 0.0)
        if self.mode == "bce":
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.mse_loss(logits, target)

    def discriminator(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """Half the sum of the losses on real (target 1) and fake (target 0) scores, as pix2pix."""
        return 0.5 * (self._against(real_logits, True) + self._against(fake_logits, False))

    def generator(self, fake_logits: Tensor, fake: Tensor | None = None, target: Tensor | None = None) -> Tensor:
        """Fool the discriminator (fake scored as real), plus l1_weight * L1(fake, target) if given."""
        loss = self._against(fake_logits, True)
        if (fake is None) != (target is None):
            raise ValueError("fake and target: pass both (for the L1 term) or neither")
        if fake is not None:
            if fake.shape != target.shape:
                raise ValueError(f"target: shape {tuple(target.shape)} differs from fake's {tuple(fake.shape)}")
            loss = loss + self.l1_weight * F.l1_loss(fake, target)
        return loss

    def forward(self, logits: Tensor, real: bool) -> Tensor:
        """The loss of scores against one label: real (1) or fake (0)."""
        return self._against(logits, real)
