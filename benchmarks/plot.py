"""Charts of a load benchmark run: reads the JSON that ``benchmarks/load.py --json FILE`` writes
and draws PNG bar charts with matplotlib.

Usage (from the repository root)::

    python benchmarks/load.py --duration 3 --repeats 1 --json results.json
    python benchmarks/plot.py results.json --out docs/_static \
        --caption "2 vCPU AMD EPYC, CPython 3.11, 3 s runs"

Writes ``bench-rps.png`` (requests per second), ``bench-cpu.png`` (requests per CPU-second of
the server, the figure that holds steady on a busy machine) and, when the run measured
latency, ``bench-latency.png`` (p50 and p99). One group of bars per scenario, one bar per
server; runs that did not succeed are left out and named under the chart.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Bar colours per server, trio_http first; other servers get the remaining colours in order.
COLOURS = {"trio_http": "#2a7ab0", "hypercorn-trio": "#e0873b", "uvicorn-h11": "#5b9e4d"}
SPARE_COLOURS = ("#8e6bbf", "#c4544f", "#7f7f7f", "#bcbd22", "#17becf", "#e377c2")

CHARTS = (
    ("rps", "bench-rps.png", "requests per second (higher is better)", "req/s"),
    ("req_per_cpu_s", "bench-cpu.png",
     "requests per CPU-second of the server (higher is better)", "req/CPU-s"),
)


def load(path: Path) -> list[dict[str, Any]]:
    """The ``summary`` rows of a results file (one per scenario and server)."""
    data = json.loads(path.read_text())
    rows = data.get("summary")
    if not isinstance(rows, list):
        raise SystemExit(f"{path}: no 'summary' list; is this benchmarks/load.py --json output?")
    return rows


def _order(values: Sequence[str], first: Sequence[str] = ()) -> list[str]:
    seen: list[str] = [v for v in first if v in values]
    seen += [v for v in values if v not in seen]
    return list(dict.fromkeys(seen))


def colours(servers: Sequence[str]) -> dict[str, str]:
    spare = iter(SPARE_COLOURS * 4)
    return {s: COLOURS.get(s) or next(spare) for s in servers}


def bar_chart(rows: list[dict[str, Any]], key: str, title: str, unit: str, out: Path,
              caption: str, palette: dict[str, str] | None = None) -> list[str]:
    """Draw one grouped bar chart of ``key``; return notes on the runs left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = _order([r["scenario"] for r in rows])
    servers = _order([r["server"] for r in rows], first=list(COLOURS))
    value = {(r["scenario"], r["server"]): r.get(key) for r in rows
             if r.get("status") in ("ok", "partial")}
    missing = [f"{r['scenario']}/{r['server']}: {r.get('status')}" for r in rows
               if r.get("status") not in ("ok", "partial", "n/a")]
    width = 0.8 / max(1, len(servers))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(scenarios) + 2), 4.2), dpi=100)
    palette = palette or colours(servers)
    for i, server in enumerate(servers):
        xs = [j + (i - (len(servers) - 1) / 2) * width for j in range(len(scenarios))]
        ys = [value.get((s, server)) or 0.0 for s in scenarios]
        bars = ax.bar(xs, ys, width * 0.95, label=server, color=palette[server])
        for bar, y in zip(bars, ys, strict=True):
            if y:
                ax.annotate(f"{y:,.0f}", (bar.get_x() + bar.get_width() / 2, y),
                            ha="center", va="bottom", fontsize=7, xytext=(0, 1),
                            textcoords="offset points")
    ax.set_xticks(range(len(scenarios)), scenarios)
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=11)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=8, frameon=False, ncols=min(4, len(servers)))
    ax.margins(y=0.15)
    if caption:
        fig.text(0.01, 0.01, caption, fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.04 if caption else 0, 1, 1))
    # No timestamp in the file: the same results give the same bytes.
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)
    return missing


def latency_chart(rows: list[dict[str, Any]], out: Path, caption: str) -> bool:
    """p50 and p99 latency per scenario and server, when the run measured them."""
    measured = [r for r in rows if r.get("p50_ms") is not None and r.get("status") == "ok"]
    if not measured:
        return False
    base = colours(_order([r["server"] for r in measured], first=list(COLOURS)))
    flat, palette = [], {}
    for r in measured:
        server = r["server"]
        flat.append({**r, "server": f"{server} p50", "value": r["p50_ms"]})
        flat.append({**r, "server": f"{server} p99", "value": r.get("p99_ms")})
        # p50 in a pale shade of the server's colour, p99 in the colour itself.
        red, green, blue = (int(base[server][i:i + 2], 16) for i in (1, 3, 5))
        palette[f"{server} p50"] = "#{:02x}{:02x}{:02x}".format(
            *((c + 255) // 2 for c in (red, green, blue)))
        palette[f"{server} p99"] = base[server]
    bar_chart(flat, "value", "latency in milliseconds (lower is better)", "ms", out, caption,
              palette)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("results", type=Path, help="JSON written by benchmarks/load.py --json")
    p.add_argument("--out", type=Path, default=Path("docs/_static"),
                   help="directory for the PNG files (default %(default)s)")
    p.add_argument("--caption", default="", help="machine and method, printed under each chart")
    p.add_argument("--scenarios", nargs="*", help="only these scenarios (default: all)")
    args = p.parse_args(argv)
    rows = load(args.results)
    if args.scenarios:
        rows = [r for r in rows if r["scenario"] in args.scenarios]
    if not rows:
        print("no results to plot", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for key, name, title, unit in CHARTS:
        missing = bar_chart(rows, key, title, unit, args.out / name, args.caption)
        written.append(args.out / name)
        for note in missing:
            print(f"{name}: left out {note}", file=sys.stderr)
    if latency_chart(rows, args.out / "bench-latency.png", args.caption):
        written.append(args.out / "bench-latency.png")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
