import pytest
import torch
from open_clip.transformer import VisionTransformer

from models.backbones.clip_loader import create_clip
from models.backbones.openclip import OpenClipBackbone, tap_indices


def test_tap_indices_are_quarters_of_depth():
    assert tap_indices(32) == [7, 15, 23, 31]
    assert tap_indices(4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="multiple of 4"):
        tap_indices(6)


def _blocks_seen_by_hooks(visual, x):
    seen = {}
    hooks = [
        blk.register_forward_hook(lambda _m, _i, out, i=i: seen.__setitem__(i, out.detach()))
        for i, blk in enumerate(visual.transformer.resblocks)
    ]
    try:
        taps = OpenClipBackbone("tiny", visual)(x)
    finally:
        for h in hooks:
            h.remove()
    return seen, taps


@pytest.mark.parametrize(
    "visual",
    [
        pytest.param(lambda: create_clip("tiny").visual, id="tiny"),
        # ViT-H's depth (32 blocks) at a small width: the indices must be 7, 15, 23, 31
        pytest.param(
            lambda: VisionTransformer(
                224, 14, width=32, layers=32, heads=2, mlp_ratio=2.0, output_dim=16
            ).eval(),
            id="32-blocks",
        ),
    ],
)
@torch.no_grad()
def test_taps_are_the_outputs_of_the_named_blocks(visual):
    visual = visual()
    n = visual.transformer.layers
    x = torch.randn(2, 3, 224, 224)
    seen, taps = _blocks_seen_by_hooks(visual, x)
    assert len(taps) == 4
    for tap, index in zip(taps, tap_indices(n), strict=True):
        assert tap.shape == (2, 256, visual.transformer.width)  # 16x16 patches, CLS dropped
        torch.testing.assert_close(tap, seen[index][:, 1:], rtol=0, atol=0)
        # and not the block before or after it
        for other in (index - 1, index + 1):
            if 0 <= other < n:
                assert not torch.allclose(tap, seen[other][:, 1:])


@torch.no_grad()
def test_global_embedding_matches_openclip():
    clip = create_clip("tiny")
    enc = OpenClipBackbone("tiny", clip.visual)
    x = torch.rand(2, 3, 224, 224)
    expected = clip.encode_image(enc.normalize(x), normalize=True)
    torch.testing.assert_close(enc.global_embedding(x), expected)
