"""benchmarks/instructions.py reads callgrind's total from its output file."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.instructions import total_instructions


def test_total_instructions_from_a_callgrind_file(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_bytes(b"version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 2351058959\n"
                     b"fl=(1) x.c\nfn=(1) main\n1 5\ntotals: 2351058959\n")
    assert total_instructions(path) == 2351058959
    path.write_bytes(b"events: Ir\n")
    with pytest.raises(RuntimeError):
        total_instructions(path)
