"""Where precision matters: the parts after the encoder run in fp32, and unit vectors are made
in an order that cannot overflow in fp16.

Reduced precision (autocast fp16/bf16, TensorRT FP16) is fine for the encoder's matrix
products, but the 100 x cosine logits, their softmax, the memory bank's distances and the
normalisations move the map directly: one bf16 rounding of a feature moves a cosine by ~0.4 %,
which the logit scale turns into several percent of probability. And TensorRT computes an L2
norm as square -> sum -> sqrt; in FP16 the square of any value above 256 overflows, and raw
ViT residual tokens carry outlier channels in the thousands. ``unit`` therefore divides by the
largest magnitude first, so every square it takes is at most 1.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

TINY = 1e-30  # keeps an all-zero vector at zero instead of 0/0


def fp32(like: torch.Tensor) -> contextlib.AbstractContextManager:
    """Turn autocast off on ``like``'s device for the enclosed block (plain fp32 maths).

    Tensors already in fp16/bf16 must still be cast with ``.float()`` inside the block.
    """
    return torch.autocast(device_type=like.device.type, enabled=False)


def unit(x: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    """``x / ||x||`` along ``dim`` in fp32, scaled by the largest magnitude first so that no
    square exceeds 1 (an FP16 engine computes the norm as square -> sum -> sqrt).

    Example:
        >>> v = unit(torch.tensor([[3000.0, 4000.0]]).half())
        >>> v.dtype, v.tolist()
        (torch.float32, [[0.6000000238418579, 0.800000011920929]])
    """
    with fp32(x):
        x = x.float()
        x = x / x.abs().amax(dim=dim, keepdim=True).clamp_min(TINY)
        return F.normalize(x, dim=dim, eps=eps)
