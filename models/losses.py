"""Pixel losses for the decoder: focal + Dice on every tap's map (as AnomalyGPT trains)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
    """``1 - 2|P.T| / (|P| + |T|)`` over the whole batch.

    Pooled over the batch rather than per image, so the normal half of a balanced batch (empty
    target) does not make the loss ~1 whatever the prediction. 0 for a perfect prediction
    (also when both are empty), ~1 for a disjoint one.

    Example:
        >>> t = torch.zeros(1, 4, 4); t[0, :2] = 1
        >>> float(dice_loss(t, t)), round(float(dice_loss(1 - t, t)), 3)
        (0.0, 1.0)
    """
    p, t = prob.float().flatten(), target.float().flatten()
    inter = (p * t).sum()
    return 1.0 - (2.0 * inter + eps) / (p.sum() + t.sum() + eps)


def tap_logits_to_maps(logits: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]):
    """Per-tap patch logits ``[B, N, 2]`` -> ``[B, 2, H, W]`` (bilinear, as inference does)."""
    b = logits.shape[0]
    x = logits.transpose(1, 2).reshape(b, 2, grid[0], grid[1])
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def decoder_loss(
    tap_logits: list[torch.Tensor],
    target: torch.Tensor,
    grid: tuple[int, int],
    gamma: float = 2.0,
    dice_weight: float = 1.0,
) -> torch.Tensor:
    """Sum over taps of focal + Dice, each tap's 16x16 logits upsampled to the mask's size.

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
        maps = tap_logits_to_maps(lg, grid, size)
        total = total + focal_loss(maps, target, gamma)
        total = total + dice_weight * dice_loss(maps.softmax(dim=1)[:, 1], target)
    return total
