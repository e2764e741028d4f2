"""Focal + Dice losses."""

import torch
import torch.nn.functional as F

from models.training.losses import decoder_loss, dice_loss, focal_loss


def test_dice_is_zero_for_a_perfect_prediction_and_about_one_for_a_disjoint_one():
    target = torch.zeros(2, 8, 8)
    target[:, :4] = 1
    assert float(dice_loss(target, target)) == 0.0
    assert float(dice_loss(1 - target, target)) > 0.999
    empty = torch.zeros(2, 8, 8)
    assert float(dice_loss(empty, empty)) == 0.0  # nothing to find, nothing found


def test_focal_with_gamma_zero_is_cross_entropy_and_down_weights_easy_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 5, 5)
    target = (torch.rand(2, 5, 5) > 0.5).float()
    ce = F.cross_entropy(logits, target.long())
    assert torch.allclose(focal_loss(logits, target, gamma=0.0), ce, atol=1e-6)
    assert float(focal_loss(logits, target, gamma=2.0)) < float(ce)


def test_decoder_loss_prefers_logits_that_match_the_mask():
    target = torch.zeros(1, 32, 32)
    target[:, :16] = 1
    grid = (4, 4)
    good = torch.zeros(1, 16, 2)
    good[0, :8, 1], good[0, 8:, 0] = 10.0, 10.0  # top half of the grid abnormal
    bad = good.flip(-1)
    assert float(decoder_loss([good] * 4, target, grid)) < 0.2  # bilinear edge band only
    assert float(decoder_loss([bad] * 4, target, grid)) > 4.0
