"""Pixel losses for the decoder: focal + Dice on every tap's map (as AnomalyGPT trains)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.decoder import abnormal_probability, patches_to_image

DICE_EPS = 1e-6


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Mean focal loss of two-class logits ``[B, 2, H, W]`` against a 0/1 ``target [B, H, W]``.

    ``gamma = 0`` is plain cross-entropy. Soft targets (between 0 and 1) are allowed.
    """
    logp = F.log_softmax(logits, dim=1)
    t = target.float()
    logp1, logp0 = logp[:, 1], logp[:, 0]
    p1, p0 = logp1.exp(), logp0.exp()
    loss = -(t * (1 - p1) ** gamma * logp1 + (1 - t) * (1 - p0) ** gamma * logp0)
    return loss.mean()


def dice_loss(prob: torch.Tensor, target: torch.Tensor, eps: float = DICE_EPS) -> torch.Tensor:
    """The paper's eq. 4 per image, averaged over the batch:
    ``1 - (2 sum p.y + eps) / (sum p^2 + sum y^2 + eps)``.

    An image with an empty target scores ~1 unless its prediction is ~0 everywhere, which
    is what pushes normal images' maps down (as AnomalyGPT trains). 0 for a perfect
    prediction, ~1 for a disjoint one.

    Example:
        >>> t = torch.zeros(1, 4, 4); t[0, :2] = 1
        >>> float(dice_loss(t, t)), round(float(dice_loss(1 - t, t)), 3)
        (0.0, 1.0)
    """
    p, t = prob.float().flatten(1), target.float().flatten(1)
    inter = (p * t).sum(1)
    per_image = 1.0 - (2.0 * inter + eps) / ((p * p).sum(1) + (t * t).sum(1) + eps)
    return per_image.mean()


def focal_loss_on_probability(
    prob: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, eps: float = 1e-6
) -> torch.Tensor:
    """``focal_loss`` of an abnormal-probability map ``[B, H, W]`` (what inference upsamples)."""
    p1 = prob.float().clamp(eps, 1.0 - eps)
    t = target.float()
    loss = -(t * (1 - p1) ** gamma * p1.log() + (1 - t) * p1**gamma * (1 - p1).log())
    return loss.mean()


def tap_probability_maps(logits: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]):
    """Per-tap patch logits ``[B, N, 2]`` -> abnormal probability ``[B, H, W]``: softmax per
    patch, then bilinear, exactly as the detector's map is made."""
    return patches_to_image(abnormal_probability(logits), grid, size)


def decoder_loss(
    tap_logits: list[torch.Tensor],
    target: torch.Tensor,
    grid: tuple[int, int],
    gamma: float = 2.0,
    dice_weight: float = 1.0,
) -> torch.Tensor:
    """Sum over taps of focal + Dice on each tap's probability map at the mask's size.

    Args:
        tap_logits: ``TextDecoder.forward`` output, ``[B, N, 2]`` per tap.
        target: 0/1 masks ``[B, H, W]``.
        grid: the patch grid ``(gh, gw)`` with ``gh * gw == N``.
        gamma: focal exponent (0 = cross-entropy).
        dice_weight: weight of the Dice term.
    """
    size = (int(target.shape[-2]), int(target.shape[-1]))
    total = target.new_zeros(())
    for lg in tap_logits:
        prob = tap_probability_maps(lg, grid, size)
        total = total + focal_loss_on_probability(prob, target, gamma)
        total = total + dice_weight * dice_loss(prob, target)
    return total
