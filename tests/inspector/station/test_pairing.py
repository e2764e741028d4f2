"""Pairing hardware-triggered frames with cell ids: every odd case flagged, none mismatched."""

from __future__ import annotations

import pytest

from inspector.station.pairing import Pairer

W = 0.5  # the window, seconds


def outcome(p: Pairer, now: float) -> list[tuple[str, str | None, str | None]]:
    return [(d.flag, d.cell_id, d.frame) for d in p.due(now)]


def test_a_frame_and_its_id_pair_either_way_round() -> None:
    p = Pairer(W)
    p.add_id("C-1", "pouch-a", 0.0)
    p.add_frame("f1", 0.2)
    p.add_frame("f2", 2.0)
    p.add_id("C-2", None, 2.3)  # the reader is downstream of the camera this time
    decided = p.due(10.0)
    assert [(d.flag, d.cell_id, d.frame) for d in decided] == [
        ("paired", "C-1", "f1"),
        ("paired", "C-2", "f2"),
    ]
    assert decided[0].product == "pouch-a" and decided[0].offset_ms == 200.0
    assert decided[1].offset_ms == -300.0


def test_a_frame_waits_out_its_window_before_it_is_decided() -> None:
    p = Pairer(W)
    p.add_frame("f1", 0.0)
    assert outcome(p, 0.4) == []
    p.add_id("C-1", None, 0.45)  # late, but inside the window
    assert outcome(p, 0.5) == [], "the id's own window is still open: a second frame may come"
    assert outcome(p, 0.95) == [("paired", "C-1", "f1")]
    assert p.pending() == (0, 0)


def test_late_missing_and_extra_ids_are_each_flagged_and_never_paired_with_a_neighbour() -> None:
    p = Pairer(W)
    # cell 1: a clean pair
    p.add_id("C-1", None, 0.0)
    p.add_frame("f1", 0.1)
    # cell 2: the id comes 0.8 s after its frame (too late)
    p.add_frame("f2", 2.0)
    p.add_id("C-2", None, 2.8)
    # cell 3: the id never comes
    p.add_frame("f3", 4.0)
    # an extra id with no cell behind it
    p.add_id("C-X", None, 6.0)
    # cell 4: a clean pair after all that
    p.add_id("C-4", None, 8.0)
    p.add_frame("f4", 8.2)
    assert outcome(p, 20.0) == [
        ("paired", "C-1", "f1"),
        ("no_cell_id", None, "f2"),
        ("no_cell_id", None, "f3"),
        ("paired", "C-4", "f4"),
        ("no_frame", "C-2", None),
        ("no_frame", "C-X", None),
    ]


def test_a_late_id_right_before_the_next_cell_makes_that_cell_ambiguous_not_mismatched() -> None:
    p = Pairer(W)
    p.add_frame("f1", 0.0)
    assert outcome(p, 0.5) == [("no_cell_id", None, "f1")]
    p.add_id("C-1", None, 0.9)  # too late for f1 ...
    p.add_id("C-2", None, 1.0)  # ... and now two ids touch the next frame
    p.add_frame("f2", 1.1)
    assert outcome(p, 5.0) == [
        ("ambiguous", None, "f2"),
        ("ambiguous", "C-1", None),
        ("ambiguous", "C-2", None),
    ]


def test_an_id_touching_two_frames_is_taken_by_neither() -> None:
    p = Pairer(W)
    p.add_frame("f1", 0.0)
    p.add_id("C-2", None, 0.35)  # the id of the second frame; the first one's id is missing
    p.add_frame("f2", 0.4)
    assert outcome(p, 5.0) == [
        ("ambiguous", None, "f1"),
        ("ambiguous", "C-2", None),
        ("no_cell_id", None, "f2"),
    ]


def test_at_each_deadline_something_is_decided_so_the_caller_never_spins() -> None:
    p = Pairer(W)
    p.add_frame("f1", 0.0)
    p.add_id("C-1", None, 0.4)  # in the window; the frame must wait for the id's window too
    p.add_frame("f2", 3.0)
    p.add_id("C-X", None, 5.0)
    decided = []
    while (deadline := p.next_deadline()) is not None:
        got = p.due(deadline)
        assert got, f"nothing decided at {deadline}"
        decided += [(deadline, d.flag, d.cell_id, d.frame) for d in got]
    assert decided == [
        (pytest.approx(0.9), "paired", "C-1", "f1"),
        (pytest.approx(3.5), "no_cell_id", None, "f2"),
        (pytest.approx(5.5), "no_frame", "C-X", None),
    ]


def test_next_deadline_says_when_to_look_again_and_drain_decides_everything() -> None:
    p = Pairer(W)
    assert p.next_deadline() is None
    p.add_frame("f1", 1.0)
    p.add_id("C-9", None, 0.9)
    assert p.next_deadline() == pytest.approx(1.5), "the id is decided with its frame"
    p.add_frame("f2", 1.2)
    flags = [d.flag for d in p.drain()]
    assert sorted(flags) == ["ambiguous", "ambiguous", "no_cell_id"]
    assert p.pending() == (0, 0)


def test_the_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Pairer(0)
