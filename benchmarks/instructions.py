"""Instructions per request, counted by valgrind's callgrind: a figure that other work on the
machine does not move, for comparing two builds of the hot path (or two servers) when req/s
is too noisy to show a few percent.

How it is taken: each server runs twice under ``valgrind --tool=callgrind`` with the ``hello``
app of ``benchmarks/apps.py``. Both runs get the same warm-up (``--warmup`` requests from
h2load), and the second then gets ``--requests`` more; the difference of the two totals,
divided by ``--requests``, is the server's user-space instructions per request (interpreter,
libraries, our code; not the kernel's work for system calls). The client is h2load with 10
connections: ``--h1`` for HTTP/1.1, 10 concurrent streams each for h2c. Under callgrind the
server is about 50x slower, so the client always has a request waiting, as under full load.

    python benchmarks/instructions.py                          # trio_http, uvicorn-httptools
    python benchmarks/instructions.py --servers trio_http trio_http-h11 uvicorn-h11
    python benchmarks/instructions.py --protocol h2c --requests 2000

Needs valgrind and h2load (``apt-get install valgrind nghttp2-client``). Every target is
127.0.0.1; each run is bounded by ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.load import HOST, free_port, running_server, server_command

APP = "benchmarks.apps:hello"
#: Servers that answer from the process started (Hypercorn serves from a child process, which
#: this count does not follow; h2load's HTTP/1 parser also refuses its status lines).
SERVERS = ("trio_http", "trio_http-h11", "uvicorn-h11", "uvicorn-httptools")
_TOTAL = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.M)


def total_instructions(path: Path) -> int:
    match = _TOTAL.search(path.read_bytes())
    if match is None:
        raise RuntimeError(f"no instruction total in {path}")
    return int(match.group(1))


def h2load(protocol: str, port: int, requests: int, timeout: float) -> None:
    mode = ["--h1"] if protocol == "h1" else ["-m", "10"]
    out = subprocess.run(
        ["h2load", *mode, "-n", str(requests), "-c", "10", f"http://{HOST}:{port}/"],
        capture_output=True, text=True, timeout=timeout, check=False,
    ).stdout
    if f"{requests} succeeded" not in out:
        raise RuntimeError(f"h2load: not every request succeeded:\n{out}")


def count(server: str, protocol: str, warmup: int, requests: int, timeout: float,
          workdir: Path) -> int:
    """Total instructions of one server run: start, ``warmup`` + ``requests`` requests, stop."""
    port = free_port()
    out = workdir / f"{server}-{requests}.callgrind"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
           *server_command(server, APP, port, None, workdir)]
    with running_server(cmd, port, workdir / f"{server}.log", timeout, timeout):
        h2load(protocol, port, warmup, timeout)
        if requests:
            h2load(protocol, port, requests, timeout)
    return total_instructions(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", nargs="+", choices=SERVERS,
                        default=["trio_http", "uvicorn-httptools"])
    parser.add_argument("--protocol", choices=("h1", "h2c"), default="h1")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per step")
    args = parser.parse_args()
    for tool in ("valgrind", "h2load"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: apt-get install -y valgrind nghttp2-client")
            return 2
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for server in args.servers:
            if server.startswith("uvicorn") and args.protocol != "h1":  # no HTTP/2
                print(f"{server}: no HTTP/2, skipped")
                continue
            base = count(server, args.protocol, args.warmup, 0, args.timeout, workdir)
            full = count(server, args.protocol, args.warmup, args.requests, args.timeout,
                         workdir)
            results[server] = (full - base) / args.requests
            print(f"{server}: {results[server]:,.0f} instructions per request "
                  f"({full:,} - {base:,} over {args.requests} requests)", flush=True)
    print()
    print(f"instructions per {args.protocol} request (callgrind, h2load -c 10, "
          f"{args.requests} requests after {args.warmup} of warm-up)")
    reference = next(iter(results), None)
    for server, value in results.items():
        assert reference is not None
        ratio = f"{value / results[reference]:.2f}x {reference}"
        print(f"  {server:<18} {value:>10,.0f}   {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
