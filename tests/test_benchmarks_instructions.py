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


def test_simple_h1_load_checks_every_response() -> None:
    from benchmarks.apps import hello
    from benchmarks.instructions import simple_h1_load
    from trio_http.testing import serve_in_thread

    with serve_in_thread(hello, tls=False) as server:
        simple_h1_load(server.port, 25, timeout=10)  # 25 over 10 connections: uneven counts

    async def not_found(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with serve_in_thread(not_found, tls=False) as server, pytest.raises(RuntimeError):
        simple_h1_load(server.port, 3, timeout=10)
