"""HTTP/3 request benchmark: trio_http versus Hypercorn's ``--quic-bind``, in the same run.

Usage (from the repository root)::

    python benchmarks/h3_bench.py [--duration S] [--warmup S] [--repeats N]
                                  [--connections C] [--streams M]
                                  [--servers trio_http hypercorn-trio hypercorn-asyncio]
                                  [--app hello|echo] [--body-size BYTES]

Every server runs ``benchmarks.apps:<app>`` as a subprocess pinned to CPU 0 (``taskset -c 0``
when available). The load generator is this file run with ``--loadgen``, in its own process
pinned to CPU 1: aioquic's sans-io client (``QuicConnection`` + ``H3Connection``) driven from
trio UDP sockets, ``C`` QUIC connections each keeping ``M`` requests in flight on concurrent
streams, for ``--warmup`` seconds not counted and then ``--duration`` seconds counted. It
prints requests per second for each server and the ratio to the baseline.

The client is Python too (aioquic), so on a 2-CPU machine the figures compare servers under
the same client, not absolute capacity: check the client's CPU share in the output. Only
127.0.0.1 is used, and every run is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SERVERS = ("trio_http", "hypercorn-trio", "hypercorn-asyncio")
BASELINE = "hypercorn-trio"


# --------------------------------------------------------------------------- load generator
def loadgen_main(argv: list[str]) -> None:
    """``--loadgen PORT CAFILE CONNECTIONS STREAMS WARMUP DURATION APP BODY_SIZE``: run the
    load and print one JSON line with the counts."""
    import trio

    port, cafile = int(argv[0]), argv[1]
    connections, streams = int(argv[2]), int(argv[3])
    warmup, duration = float(argv[4]), float(argv[5])
    app, body_size = argv[6], int(argv[7])
    result = trio.run(_load, port, cafile, connections, streams, warmup, duration, app, body_size)
    print(json.dumps(result), flush=True)


async def _load(
    port: int,
    cafile: str,
    connections: int,
    streams: int,
    warmup: float,
    duration: float,
    app: str,
    body_size: int,
) -> dict[str, Any]:
    import trio

    counts = {"ok": 0, "failed": 0, "measured_ok": 0}
    body = b"b" * body_size if app == "echo" else b""
    method = "POST" if app == "echo" else "GET"
    path = "/echo" if app == "echo" else "/"
    # The clock starts once every connection has finished its handshake.
    window = {"measure_from": math.inf, "stop_at": math.inf}
    connected = 0
    go = trio.Event()

    async def one_connection() -> None:
        nonlocal connected
        async with _open_client(port, cafile) as client:
            connected += 1
            if connected == connections:
                now = trio.current_time()
                window["measure_from"] = now + warmup
                window["stop_at"] = now + warmup + duration
                go.set()
            await go.wait()

            async def worker() -> None:
                while trio.current_time() < window["stop_at"] and not client.closed:
                    status, _ = await client.request(method, path, body)
                    ok = status == 200
                    counts["ok" if ok else "failed"] += 1
                    if ok and window["measure_from"] <= trio.current_time() <= window["stop_at"]:
                        counts["measured_ok"] += 1

            async with trio.open_nursery() as nursery:
                for _ in range(streams):
                    nursery.start_soon(worker)

    cpu0 = time.process_time()
    with trio.move_on_after(warmup + duration + 30):
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(one_connection)
            with trio.fail_after(15):
                await go.wait()
            cpu0 = time.process_time()
    cpu = time.process_time() - cpu0
    return {
        **counts,
        "rps": counts["measured_ok"] / duration,
        "client_cpu_share": cpu / (warmup + duration),
    }


class _Client:
    """aioquic's client connection driven by a reader and a sender task."""

    def __init__(self, sock: Any, port: int, cafile: str) -> None:
        import ssl

        from aioquic.h3.connection import H3_ALPN, H3Connection
        from aioquic.quic.configuration import QuicConfiguration
        from aioquic.quic.connection import QuicConnection

        config = QuicConfiguration(
            alpn_protocols=list(H3_ALPN), is_client=True, server_name="localhost"
        )
        config.load_verify_locations(cafile=cafile)
        config.verify_mode = ssl.CERT_REQUIRED
        self.sock = sock
        self.addr = (HOST, port)
        self.quic = QuicConnection(configuration=config)
        self.h3 = H3Connection(self.quic)
        self.pending: dict[int, list[Any]] = {}  # stream -> [status, body bytes, event]
        self.closed = False
        import trio

        self.connected = trio.Event()
        self._wake = trio.Event()

    def kick(self) -> None:
        self._wake.set()

    async def reader(self) -> None:
        import trio

        while True:
            data, addr = await self.sock.recvfrom(65536)
            self.quic.receive_datagram(data, addr, now=trio.current_time())
            self._process()
            self.kick()

    async def sender(self) -> None:
        import trio

        while True:
            timer = self.quic.get_timer()
            if not self._wake.is_set():
                with trio.move_on_at(math.inf if timer is None else timer):
                    await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            if timer is not None and now >= timer:
                self.quic.handle_timer(now)
                self._process()
            for data, addr in self.quic.datagrams_to_send(now=now):
                await self.sock.sendto(data, addr)

    def _process(self) -> None:
        from aioquic.h3 import events as h3e
        from aioquic.quic import events as qe

        while (ev := self.quic.next_event()) is not None:
            if isinstance(ev, qe.HandshakeCompleted):
                self.connected.set()
            elif isinstance(ev, qe.ConnectionTerminated):
                self.closed = True
                self.connected.set()
                for entry in self.pending.values():
                    entry[2].set()
            elif isinstance(ev, qe.StreamReset):
                entry = self.pending.get(ev.stream_id)
                if entry is not None:
                    entry[2].set()
            for h in self.h3.handle_event(ev):
                entry = self.pending.get(getattr(h, "stream_id", -1))
                if entry is None:
                    continue
                if isinstance(h, h3e.HeadersReceived) and not entry[0]:
                    entry[0] = int(dict(h.headers)[b":status"])
                elif isinstance(h, h3e.DataReceived):
                    entry[1] += len(h.data)
                if getattr(h, "stream_ended", False):
                    entry[2].set()

    async def request(self, method: str, path: str, body: bytes) -> tuple[int, int]:
        import trio

        if self.closed:
            return 0, 0
        sid = self.quic.get_next_available_stream_id()
        entry: list[Any] = [0, 0, trio.Event()]
        self.pending[sid] = entry
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
        ]
        self.h3.send_headers(sid, headers, end_stream=not body)
        if body:
            self.h3.send_data(sid, body, end_stream=True)
        self.kick()
        await entry[2].wait()
        del self.pending[sid]
        return entry[0], entry[1]


@contextlib.asynccontextmanager
async def _open_client(port: int, cafile: str) -> Any:
    import trio

    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind((HOST, 0))
    client = _Client(sock, port, cafile)
    with sock:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.reader)
            nursery.start_soon(client.sender)
            client.quic.connect(client.addr, now=trio.current_time())
            client.kick()
            with trio.fail_after(10):
                await client.connected.wait()
            try:
                yield client
            finally:
                client.quic.close(error_code=0x100)
                client.kick()
                for _ in range(5):
                    await trio.lowlevel.checkpoint()
                nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- harness
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pin(cpu: str | None, argv: list[str]) -> list[str]:
    return argv if cpu is None else ["taskset", "-c", cpu, *argv]


def make_tls_files(directory: Path) -> tuple[str, str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", HOST)
    certfile, keyfile, cafile = (str(directory / n) for n in ("cert.pem", "key.pem", "ca.pem"))
    for blob in cert.cert_chain_pems:
        blob.write_to_path(certfile, append=True)
    cert.private_key_pem.write_to_path(keyfile)
    ca.cert_pem.write_to_path(cafile)
    return certfile, keyfile, cafile


def server_command(
    server: str, app: str, tcp: int, udp: int, certfile: str, keyfile: str
) -> list[str]:
    target = f"benchmarks.apps:{app}"
    if server == "trio_http":
        return [
            sys.executable,
            "-m",
            "trio_http",
            target,
            "--bind",
            f"{HOST}:{tcp}",
            "--quic-bind",
            f"{HOST}:{udp}",
            "--certfile",
            certfile,
            "--keyfile",
            keyfile,
            "--log-level",
            "warning",
        ]
    worker = server.split("-", 1)[1]
    return [
        sys.executable,
        "-m",
        "hypercorn",
        "--worker-class",
        worker,
        "--bind",
        f"{HOST}:{tcp}",
        "--quic-bind",
        f"{HOST}:{udp}",
        "--certfile",
        certfile,
        "--keyfile",
        keyfile,
        "--log-level",
        "warning",
        target,
    ]


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_loadgen(
    args: argparse.Namespace, udp: int, cafile: str, warmup: float, duration: float, cpu: str | None
) -> dict[str, Any]:
    argv = pin(
        cpu,
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--loadgen",
            str(udp),
            cafile,
            str(args.connections),
            str(args.streams),
            str(warmup),
            str(duration),
            args.app,
            str(args.body_size),
        ],
    )
    done = subprocess.run(
        argv, capture_output=True, timeout=warmup + duration + 60, cwd=REPO_ROOT, check=False
    )
    lines = [ln for ln in done.stdout.decode().splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"load generator failed: {done.stderr.decode()[-1500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def measure(
    server: str,
    args: argparse.Namespace,
    tls: tuple[str, str, str],
    workdir: Path,
    cpus: tuple[str | None, str | None],
) -> dict[str, Any]:
    certfile, keyfile, cafile = tls
    tcp, udp = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    logfile = workdir / f"{server}.log"
    with logfile.open("wb") as out:
        proc = subprocess.Popen(
            pin(cpus[0], server_command(server, args.app, tcp, udp, certfile, keyfile)),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + args.start_timeout
        while True:  # ready once one request over HTTP/3 succeeds
            if proc.poll() is not None:
                raise RuntimeError(f"{server} exited: {logfile.read_text()[-1500:]}")
            try:
                probe = run_loadgen(args, udp, cafile, 0.0, 0.5, None)
                if probe["ok"] and not probe["failed"]:
                    break
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server} not answering HTTP/3 on {udp}")
            time.sleep(0.3)
        return run_loadgen(args, udp, cafile, args.warmup, args.duration, cpus[1])
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--loadgen"]:
        loadgen_main(argv[1:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=8.0, help="seconds measured per run")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds not counted first")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--connections", type=int, default=4, help="QUIC connections")
    p.add_argument(
        "--streams",
        type=int,
        default=16,
        help="requests in flight per connection, each on its own stream",
    )
    p.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    p.add_argument("--app", choices=("hello", "echo"), default="hello")
    p.add_argument("--body-size", type=int, default=4096, help="request body for --app echo")
    p.add_argument("--start-timeout", type=float, default=20.0)
    p.add_argument("--json", metavar="PATH", help="also write the raw results here")
    args = p.parse_args(argv)

    have_taskset = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    cpus = ("0", "1") if have_taskset else (None, None)
    versions = {name: importlib.metadata.version(name) for name in ("aioquic", "hypercorn", "trio")}
    log(
        f"h3_bench: app={args.app} connections={args.connections} streams={args.streams} "
        f"duration={args.duration}s warmup={args.warmup}s repeats={args.repeats} "
        f"pinning={'server cpu0, client cpu1' if have_taskset else 'none'} "
        f"python={sys.version.split()[0]} {versions}"
    )
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in args.servers}
    with tempfile.TemporaryDirectory(prefix="h3bench-") as tmp:
        workdir = Path(tmp)
        tls = make_tls_files(workdir)
        for repeat in range(args.repeats):
            order = args.servers if repeat % 2 == 0 else list(reversed(args.servers))
            for server in order:
                try:
                    res = measure(server, args, tls, workdir, cpus)
                except Exception as exc:
                    res = {"error": str(exc)[-400:], "rps": None}
                results[server].append(res)
                log(
                    f"  run {repeat + 1} {server:18} "
                    + (
                        f"{res['rps']:9.1f} req/s  failed={res['failed']}  "
                        f"client cpu={res['client_cpu_share']:.0%}"
                        if res.get("rps") is not None
                        else f"FAILED {res['error']}"
                    )
                )
    best = {
        s: max((r["rps"] for r in rs if r.get("rps")), default=None) for s, rs in results.items()
    }
    print(f"{'server':20} {'req/s (best)':>13} {'median':>9}  runs")
    for server, runs in results.items():
        values = [r["rps"] for r in runs if r.get("rps")]
        med = statistics.median(values) if values else None
        runs_text = " ".join(f"{v:.0f}" if v else "-" for v in (r.get("rps") for r in runs))
        print(f"{server:20} {best[server] or 0:13.1f} {med or 0:9.1f}  {runs_text}")
    base = best.get(BASELINE)
    subject = best.get("trio_http")
    for server in args.servers:
        if server != "trio_http" and best.get(server) and subject:
            print(f"trio_http / {server}: {subject / best[server]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if subject and (base or BASELINE not in args.servers) else 1


if __name__ == "__main__":
    sys.exit(main())
