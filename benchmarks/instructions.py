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

Hypercorn serves from a child process: callgrind follows it (``--trace-children=yes``) and
the totals of all the server's processes are added up. h2load's HTTP/1 parser refuses
Hypercorn's status line (no reason phrase), so its HTTP/1.1 requests come from a small client
here that sends what ``h2load --h1`` sends (``Host`` and ``user-agent``), 10 connections with
one request in flight on each.

    python benchmarks/instructions.py                          # trio_http, uvicorn-httptools
    python benchmarks/instructions.py --servers trio_http trio_http-h11 uvicorn-h11
    python benchmarks/instructions.py --protocol h2c --requests 2000
    python benchmarks/instructions.py --servers trio_http hypercorn-trio

Needs valgrind and h2load (``apt-get install valgrind nghttp2-client``). Every target is
127.0.0.1; each run is bounded by ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.load import HOST, free_port, running_server, server_command

APP = "benchmarks.apps:hello"
SERVERS = ("trio_http", "trio_http-h11", "hypercorn-trio", "uvicorn-h11", "uvicorn-httptools")
_TOTAL = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.M)
CONNECTIONS = 10


def total_instructions(path: Path) -> int:
    match = _TOTAL.search(path.read_bytes())
    if match is None:
        raise RuntimeError(f"no instruction total in {path}")
    return int(match.group(1))


def simple_h1_load(port: int, requests: int, timeout: float) -> None:
    """``requests`` keep-alive GETs over ``CONNECTIONS`` connections, one in flight on each,
    with the fields ``h2load --h1`` sends; every response must be a 200 with its body."""
    request = (f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
               "user-agent: h2load nghttp2/1.52.0\r\n\r\n").encode()
    deadline = time.monotonic() + timeout
    counts = [requests // CONNECTIONS + (i < requests % CONNECTIONS) for i in range(CONNECTIONS)]

    def one_connection(n: int) -> None:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            buf = b""
            for _ in range(n):
                sock.sendall(request)
                while b"\r\n\r\n" not in buf:
                    buf += _recv(sock, deadline)
                head, _, buf = buf.partition(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"unexpected response: {head[:80]!r}")
                length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head)[1])  # type: ignore[index]
                while len(buf) < length:
                    buf += _recv(sock, deadline)
                buf = buf[length:]

    with concurrent.futures.ThreadPoolExecutor(CONNECTIONS) as pool:
        for future in [pool.submit(one_connection, n) for n in counts if n]:
            future.result()


def _recv(sock: socket.socket, deadline: float) -> bytes:
    if time.monotonic() > deadline:
        raise RuntimeError("the client ran out of time")
    data = sock.recv(65536)
    if not data:
        raise RuntimeError("the server closed the connection")
    return data


def load(server: str, protocol: str, port: int, requests: int, timeout: float) -> None:
    if server == "hypercorn-trio" and protocol == "h1":
        simple_h1_load(port, requests, timeout)
    else:
        h2load(protocol, port, requests, timeout)


def h2load(protocol: str, port: int, requests: int, timeout: float) -> None:
    mode = ["--h1"] if protocol == "h1" else ["-m", "10"]
    out = subprocess.run(
        ["h2load", *mode, "-n", str(requests), "-c", str(CONNECTIONS), f"http://{HOST}:{port}/"],
        capture_output=True, text=True, timeout=timeout, check=False,
    ).stdout
    if f"{requests} succeeded" not in out:
        raise RuntimeError(f"h2load: not every request succeeded:\n{out}")


def count(server: str, protocol: str, warmup: int, requests: int, timeout: float,
          workdir: Path) -> int:
    """Total instructions of one server run: start, ``warmup`` + ``requests`` requests, stop."""
    port = free_port()
    stem = f"{server}-{requests}"
    # One file per process (%p): Hypercorn serves from a child, and all of them are counted.
    cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes",
           f"--callgrind-out-file={workdir / stem}.%p.callgrind",
           *server_command(server, APP, port, None, workdir)]
    with running_server(cmd, port, workdir / f"{server}.log", timeout, timeout) as proc:
        load(server, protocol, port, warmup, timeout)
        if requests:
            load(server, protocol, port, requests, timeout)
        stop_group(proc.pid, timeout)
    return sum(total_instructions(path) for path in workdir.glob(f"{stem}.*.callgrind"))


def stop_group(pgid: int, timeout: float) -> None:
    """SIGTERM the server's process group and wait until every process in it has gone, so
    each has written its totals (a process killed outright writes none; the load harness's
    stop sends SIGKILL to what is left once the parent exits)."""
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(-pgid, os.WNOHANG)  # reap the parent, our child
        time.sleep(0.2)
    raise RuntimeError(f"server processes still running {timeout}s after SIGTERM")


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
    client = "h2load --h1" if args.protocol == "h1" else "h2load -m 10"
    print(f"instructions per {args.protocol} request (callgrind, {client} -c {CONNECTIONS}; "
          f"Hypercorn's HTTP/1.1: the same requests from this script; "
          f"{args.requests} requests after {args.warmup} of warm-up)")
    reference = next(iter(results), None)
    for server, value in results.items():
        assert reference is not None
        ratio = f"{value / results[reference]:.2f}x {reference}"
        print(f"  {server:<18} {value:>10,.0f}   {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
