"""benchmarks/library_floor.py drives h11 and h2 through whole exchanges (its asserts check
each request and response); timing is only printed, never asserted."""

from __future__ import annotations

from benchmarks.library_floor import h2_floor, h11_floor


def test_h11_floor_completes_its_exchanges() -> None:
    assert h11_floor(50) > 0


def test_h2_floor_completes_its_exchanges() -> None:
    # 50 requests in 5 reads: more than one read, so flow-control credit must flow back.
    assert h2_floor(50, streams=10) > 0
