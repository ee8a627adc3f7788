"""WebSocket echo benchmark: round trips per second, trio_http versus Hypercorn's trio worker.

Usage (from the repository root)::

    python benchmarks/ws_echo.py [--duration S] [--warmup S] [--repeats N]
                                 [--connections N] [--size BYTES] [--binary]
                                 [--servers trio_http hypercorn-trio uvicorn floor]

Each server runs the same ASGI echo app (``app`` below) in a fresh subprocess pinned to CPU 0
(``taskset -c 0``); the client runs in this process pinned to CPU 1. The client opens
``--connections`` WebSockets over HTTP/1.1 (no permessage-deflate offered), then each one
sends a message, waits for its exact echo, and sends the next: the figure is completed round
trips per second over ``--duration`` seconds, after ``--warmup`` seconds not counted. Servers
take turns, alternating order between repeats; the best and median repeats are reported, and
the ratio trio_http / hypercorn-trio.

The client is asyncio with pre-built frames, so that it costs far less per round trip than the
servers it measures (the handshake is checked, and every echo is compared byte for byte).
Only 127.0.0.1 is used; every server process is stopped with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import hashlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
APP = "benchmarks.ws_echo:app"
BASELINE, SUBJECT = "hypercorn-trio", "trio_http"


# --- the app every server runs -----------------------------------------------------------
async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI 3 echo: lifespan-aware; WebSocket messages echoed; HTTP answered ``ok``."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def _floor_connection(stream: Any) -> None:
    """The reference floor: one trio task per connection over trio's SocketStream, wsproto's
    handshake and frames, no ASGI, no limits: the least a trio+wsproto server that uses trio's
    streams can do per message."""
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import AcceptConnection, BytesMessage, TextMessage
    from wsproto.handshake import H11Handshake

    hs = H11Handshake(ConnectionType.SERVER)
    while not list(hs.events()):
        hs.receive_data(await stream.receive_some(65536))
    await stream.send_all(hs.send(AcceptConnection()))
    conn = Connection(ConnectionType.SERVER)
    while data := await stream.receive_some(65536):
        conn.receive_data(data)
        out = b""
        for ev in conn.events():
            if isinstance(ev, (TextMessage, BytesMessage)):
                out += conn.send(type(ev)(data=ev.data))
        if out:
            await stream.send_all(out)


def serve_floor(port: int) -> None:
    import trio

    trio.run(functools.partial(trio.serve_tcp, _floor_connection, port, host=HOST))


# --- servers -----------------------------------------------------------------------------
def server_command(name: str, port: int) -> list[str]:
    py = sys.executable
    if name == "floor":
        return [py, str(Path(__file__).resolve()), "--serve-floor", str(port)]
    if name == "trio_http":
        return [py, "-m", "trio_http", APP, "--bind", f"{HOST}:{port}", "--log-level", "warning"]
    if name == "hypercorn-trio":
        return [
            py,
            "-m",
            "hypercorn",
            "--worker-class",
            "trio",
            "--bind",
            f"{HOST}:{port}",
            "--log-level",
            "warning",
            APP,
        ]
    if name == "uvicorn":
        return [
            py,
            "-m",
            "uvicorn",
            "--http",
            "h11",
            "--ws",
            "wsproto",
            "--no-access-log",
            "--log-level",
            "warning",
            "--host",
            HOST,
            "--port",
            str(port),
            APP,
        ]
    raise ValueError(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and its descendants (Hypercorn serves from a
    worker subprocess), from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo += [c for c, pp in parents.items() if pp == p]
    return total


@contextlib.contextmanager
def running_server(name: str, log_dir: Path) -> Iterator[tuple[int, int]]:
    port = free_port()
    cmd = server_command(name, port)
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    log = open(log_dir / f"{name}.log", "ab")
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {log.name}")
            try:
                socket.create_connection((HOST, port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not listen within 20 s") from None
                time.sleep(0.1)
        yield port, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


# --- the client --------------------------------------------------------------------------
def client_frame(payload: bytes, opcode: int) -> bytes:
    """A masked client frame (RFC 6455 §5.3)."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def server_frame(payload: bytes, opcode: int) -> bytes:
    """The unmasked frame a server echoes ``payload`` in."""
    n = len(payload)
    if n < 126:
        return bytes([0x80 | opcode, n]) + payload
    if n < 65536:
        return bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big") + payload
    return bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big") + payload


class EchoClient(asyncio.Protocol):
    """One WebSocket: handshake, then one message in flight at a time."""

    def __init__(self, port: int, out: bytes, expected: bytes, counts: list[int], idx: int):
        self.port = port
        self.out = out
        self.expected = expected
        self.counts = counts
        self.idx = idx
        self.key = base64.b64encode(os.urandom(16))
        self.buf = bytearray()
        self.open = False
        self.running = True
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.write(  # type: ignore[union-attr]
            b"GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (HOST.encode(), self.port, self.key)
        )

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            accept = base64.b64encode(
                hashlib.sha1(self.key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
            ).lower()
            if not head.startswith(b"http/1.1 101") or accept not in head:
                self.ready.set_exception(RuntimeError(f"bad handshake: {head[:200]!r}"))
                return
            del buf[: end + 4]
            self.open = True
            self.ready.set_result(None)
            self.transport.write(self.out)  # type: ignore[union-attr]
        n = len(self.expected)
        while len(buf) >= n:
            if buf[:n] != self.expected:
                raise RuntimeError(f"wrong echo: {bytes(buf[:40])!r}")
            del buf[:n]
            self.counts[self.idx] += 1
            if self.running:
                self.transport.write(self.out)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"connection lost: {exc}"))


async def measure(
    port: int,
    pid: int,
    connections: int,
    payload: bytes,
    opcode: int,
    warmup: float,
    duration: float,
) -> tuple[float, float]:
    """Round trips per second, and server CPU microseconds per round trip."""
    loop = asyncio.get_running_loop()
    counts = [0] * connections
    out, expected = client_frame(payload, opcode), server_frame(payload, opcode)
    clients: list[EchoClient] = []
    for i in range(connections):
        _, proto = await loop.create_connection(
            lambda i=i: EchoClient(port, out, expected, counts, i), HOST, port
        )
        clients.append(proto)  # type: ignore[arg-type]
    await asyncio.wait_for(asyncio.gather(*(c.ready for c in clients)), 20)
    await asyncio.sleep(warmup)
    c0, t0, cpu0 = sum(counts), time.perf_counter(), tree_cpu_seconds(pid)
    own0 = time.process_time()
    await asyncio.sleep(duration)
    c1, t1, cpu1 = sum(counts), time.perf_counter(), tree_cpu_seconds(pid)
    own1 = time.process_time()
    for c in clients:
        c.running = False
    if min(counts) == 0:
        raise RuntimeError("a connection completed no round trip")
    for c in clients:
        c.transport.close()  # type: ignore[union-attr]
    if (own1 - own0) / (t1 - t0) > 0.9:
        print(f"    (the client used {(own1 - own0) / (t1 - t0):.0%} of its CPU: it may be "
              "the bottleneck)")
    return (c1 - c0) / (t1 - t0), (cpu1 - cpu0) / (c1 - c0) * 1e6


# --- main --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds not counted (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="runs per server (default 3)")
    p.add_argument("--connections", type=int, default=20, help="WebSockets (default 20)")
    p.add_argument("--size", type=int, default=16, help="message bytes (default 16)")
    p.add_argument("--binary", action="store_true", help="binary messages (default text)")
    p.add_argument(
        "--servers", nargs="+", default=[SUBJECT, BASELINE],
        choices=[SUBJECT, BASELINE, "uvicorn", "floor"],
        help="servers to measure; 'floor' is a reference single-task trio+wsproto echo loop "
             "over trio's SocketStream (no ASGI, no limits); trio_http's direct socket calls "
             "(trio_http/_sockio.py) can beat it",
    )
    p.add_argument("--serve-floor", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_floor:
        serve_floor(args.serve_floor)
        return 0

    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})
    payload = b"x" * args.size
    opcode = 2 if args.binary else 1
    rates: dict[str, list[float]] = {s: [] for s in args.servers}
    cpus: dict[str, list[float]] = {s: [] for s in args.servers}
    print(
        f"WebSocket echo: {args.connections} connections, {args.size}-byte "
        f"{'binary' if args.binary else 'text'} messages, {args.warmup:g} s warm-up + "
        f"{args.duration:g} s, {args.repeats} repeats; server on CPU 0, client on CPU 1; "
        f"Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = args.servers if r % 2 == 0 else list(reversed(args.servers))
            for name in order:
                try:
                    with running_server(name, Path(tmp)) as (port, pid):
                        rate, cpu = asyncio.run(
                            measure(
                                port,
                                pid,
                                args.connections,
                                payload,
                                opcode,
                                args.warmup,
                                args.duration,
                            )
                        )
                except Exception as exc:
                    print(f"  {name:15} repeat {r + 1}: failed: {exc}")
                    continue
                rates[name].append(rate)
                cpus[name].append(cpu)
                print(
                    f"  {name:15} repeat {r + 1}: {rate:8.0f} round trips/s, "
                    f"{cpu:6.1f} us server CPU per round trip"
                )
    print()
    print(f"{'server':15} {'rt/s best':>10} {'rt/s median':>12} {'CPU us/rt median':>17}")
    for name in args.servers:
        if rates[name]:
            print(
                f"{name:15} {max(rates[name]):10.0f} {statistics.median(rates[name]):12.0f} "
                f"{statistics.median(cpus[name]):17.1f}"
            )
        else:
            print(f"{name:15} {'failed':>10}")
    if rates.get(SUBJECT) and rates.get(BASELINE):
        best = max(rates[SUBJECT]) / max(rates[BASELINE])
        med = statistics.median(rates[SUBJECT]) / statistics.median(rates[BASELINE])
        cpu = statistics.median(cpus[BASELINE]) / statistics.median(cpus[SUBJECT])
        print(
            f"\n{SUBJECT} / {BASELINE}: {best:.2f}x round trips/s (best), {med:.2f}x "
            f"(median); {cpu:.2f}x round trips per server CPU second (median)"
        )
    return 0 if all(rates.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
