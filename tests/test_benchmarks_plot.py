"""benchmarks/plot.py draws the charts of docs/benchmarks.md from the harness's JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REQUIRE_TOOLS, TESTS_DIR

REPO = TESTS_DIR.parent


def _summary(scenario: str, server: str, rps: float | None, status: str = "ok") -> dict:
    return {"scenario": scenario, "server": server, "status": status, "rps": rps,
            "runs": [rps], "failures": 0, "cpu_percent": 99.0,
            "req_per_cpu_s": None if rps is None else rps * 1.1, "note": "",
            "p50_ms": 1.5, "p99_ms": 9.0}


def test_plot_writes_the_charts(tmp_path):
    if REQUIRE_TOOLS:
        import matplotlib  # noqa: F401
    else:
        pytest.importorskip("matplotlib")
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"results": [], "summary": [
        _summary("h1", "trio_http", 5000.0), _summary("h1", "hypercorn-trio", 1500.0),
        _summary("h1", "uvicorn-h11", 5300.0), _summary("h2c", "trio_http", 6400.0),
        _summary("h2c", "hypercorn-trio", None, status="failed"),
        _summary("h2c", "uvicorn-h11", None, status="n/a"),
    ]}))
    out = tmp_path / "charts"
    proc = subprocess.run(
        [sys.executable, "benchmarks/plot.py", str(results), "--out", str(out),
         "--caption", "test machine"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["bench-cpu.png", "bench-latency.png", "bench-rps.png"]
    for name in names:
        assert (out / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # The failed run is named, the one that does not apply (n/a) is not.
    assert "left out h2c/hypercorn-trio: failed" in proc.stderr
    assert "uvicorn-h11: n/a" not in proc.stderr
    # Same input, same bytes: the committed charts only change when the results do.
    first = (out / "bench-rps.png").read_bytes()
    subprocess.run([sys.executable, "benchmarks/plot.py", str(results), "--out", str(out),
                    "--caption", "test machine"], cwd=REPO, check=True, timeout=120,
                   capture_output=True)
    assert (out / "bench-rps.png").read_bytes() == first


def test_plot_rejects_other_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    proc = subprocess.run([sys.executable, "benchmarks/plot.py", str(bad), "--out",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode != 0
    assert "no 'summary' list" in proc.stderr
