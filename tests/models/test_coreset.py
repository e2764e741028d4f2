import torch

from models.memory_bank import CoresetSize, MemoryBank, greedy_coreset

# A bank of 10 % of the patches must find, for held-out normal patches, a nearest neighbour
# within this factor of the full bank's (PatchCore reports ~1 % AUROC loss at 10 %).
TOLERANCE = 1.25


def _normal_patches(n_images: int, seed: int) -> list[torch.Tensor]:
    """Patch features of 'normal images': a few textures with noise, like a real part."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(40, 64, generator=torch.Generator().manual_seed(0)) * 3
    pick = torch.randint(0, 40, (n_images, 400), generator=g)
    return [centres[pick[i]] + 0.3 * torch.randn(400, 64, generator=g) for i in range(n_images)]


def test_the_coreset_keeps_held_out_nearest_neighbour_distances_within_tolerance():
    refs = _normal_patches(10, seed=1)
    full = MemoryBank.from_taps(
        [[r[None]] for r in refs], False, CoresetSize(1.0, 1, 10**9)
    )
    small = MemoryBank.from_taps(
        [[r[None]] for r in refs], False, CoresetSize(0.1, 1, 10**9)
    )
    assert small.n_patches == 400 and full.n_patches == 4000
    held_out = _normal_patches(3, seed=2)
    d_full = torch.cat([full.distances([h[None]])[0] for h in held_out])
    d_small = torch.cat([small.distances([h[None]])[0] for h in held_out])
    assert float(d_small.mean() / d_full.mean()) < TOLERANCE
    assert float(d_small.max() / d_full.max()) < TOLERANCE


def test_greedy_coreset_picks_distinct_spread_points():
    x = torch.cat([torch.zeros(50, 2), torch.ones(50, 2) * 10, torch.tensor([[100.0, 100.0]])])
    chosen = set(greedy_coreset(x, 3).tolist())
    assert len(chosen) == 3
    assert 100 in chosen  # the outlier is the farthest point: always kept


def test_coreset_size_respects_fraction_minimum_and_maximum():
    size = CoresetSize(fraction=0.1, minimum=100, maximum=1000)
    assert size.of(50) == 50  # never more than there are
    assert size.of(500) == 100  # at least the minimum
    assert size.of(5000) == 500  # the fraction
    assert size.of(50000) == 1000  # at most the maximum


def test_scale_puts_the_farthest_normal_patch_at_one_half():
    refs = _normal_patches(4, seed=3)
    bank = MemoryBank.from_taps([[r[None]] for r in refs], False)
    maps = torch.cat([bank([r[None]])[0, 0] for r in refs])
    assert float(maps.max()) < 0.5  # references are in the bank: below their LOO worst
    far = bank([refs[0][None] + 100.0])
    assert float(far.min()) > 0.9
