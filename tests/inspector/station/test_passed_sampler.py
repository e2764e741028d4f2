"""The daemon keeps every n-th passed frame for feedback datasets, and none when n is 0."""

from __future__ import annotations

from inspector.station.passed_sampler import PassedSampler


def test_every_nth_pass_is_kept() -> None:
    sampler = PassedSampler(3)
    assert [sampler.take() for _ in range(7)] == [False, False, True, False, False, True, False]
    assert not any(PassedSampler(0).take() for _ in range(5))
