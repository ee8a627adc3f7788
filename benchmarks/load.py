"""Load benchmark harness: trio_http versus hypercorn (trio worker) and uvicorn (h11).

Usage (from the repository root)::

    python benchmarks/load.py [--duration S] [--repeats N]
                              [--scenarios h1 h2c h2tls] [--servers trio_http hypercorn-trio]
                              [--app hello|echo|big] [--json results.json] [--install]

Every server is started as a subprocess pinned to one CPU (``taskset -c 0``) and the
load generator (``wrk`` for HTTP/1.1, ``h2load`` for HTTP/2) is pinned to the other
(``taskset -c 1``).  Each server/scenario pair is measured ``--repeats`` times, servers
alternating, a fresh server process per run; the table reports the best run, the median,
the failures summed over all runs and the ratio to hypercorn-trio.

Only loopback (127.0.0.1) is ever targeted, and every run is bounded in time: the load
generator is killed if it overruns, the server gets SIGTERM and then SIGKILL.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
INSTALL_APT = ["apt-get", "install", "-y", "nghttp2-client", "wrk"]
INSTALL_PIP = ["hypercorn", "uvicorn", "trustme"]

SCENARIOS = ("h1", "h1post", "h1big", "h2big", "h2c", "h2tls", "mem", "ws", "h3")
DEFAULT_SCENARIOS = ("h1", "h1post", "h1big", "h2big", "h2c", "h2tls", "mem")
SERVERS = ("trio_http", "trio_http-h11", "hypercorn-trio", "uvicorn-h11", "uvicorn-httptools")
BASELINE = "hypercorn-trio"
BASELINE2 = "uvicorn-h11"
SUBJECT = "trio_http"
SUBJECTS = ("trio_http", "trio_http-h11")
SCENARIO_DESCRIPTIONS = {
    "h1": "HTTP/1.1 keep-alive GET, cleartext",
    "h1post": "HTTP/1.1 POST, 64 KiB body echoed",
    "h1big": "HTTP/1.1 GET, 1 MiB response",
    "h2big": "HTTP/2 (h2c) GET, 1 MiB response",
    "h2c": "HTTP/2 prior knowledge, cleartext",
    "h2tls": "HTTP/2 over TLS (ALPN h2)",
    "mem": "resident memory per idle keep-alive connection",
    "ws": "WebSocket echo (benchmarks/ws_echo.py)",
    "h3": "HTTP/3 (benchmarks/h3_bench.py)",
}
#: The app each scenario runs (``--app`` overrides it for h1, h2c and h2tls).
SCENARIO_APP = {"h1": "hello", "h1post": "echo", "h1big": "big", "h2big": "big",
                "h2c": "hello", "h2tls": "hello", "mem": "hello"}
H1_SCENARIOS = ("h1", "h1post", "h1big")
H2_SCENARIOS = ("h2big", "h2c", "h2tls")
BIG_SCENARIOS = ("h1big", "h2big")  # figures also in MiB/s
POST_BODY_SIZE = 64 * 1024
MEM_CONNECTIONS = 1000


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class TLSFiles:
    certfile: Path
    keyfile: Path
    cafile: Path


@dataclass
class RunResult:
    scenario: str
    server: str
    repeat: int
    status: str  # "ok", "failed", "timeout", "n/a"
    elapsed: float = 0.0  # wall time of the measured load-generator run
    rps: float | None = None
    requests: int = 0
    failures: int = 0
    note: str = ""
    command: list[str] = field(default_factory=list)
    measured: bool = False  # the load generator ran and its output was read
    server_cpu_s: float | None = None  # CPU seconds the server used during the measured run
    tracebacks: int = 0  # tracebacks found in the server's log
    last_error: str = ""  # the last exception line of those
    p50_ms: float | None = None  # latency percentiles of the measured run
    p99_ms: float | None = None
    rss_per_conn: float | None = None  # "mem": bytes of server RSS per idle connection

    @property
    def cpu_percent(self) -> float | None:
        if self.server_cpu_s is None or self.status != "ok":
            return None
        return 100.0 * self.server_cpu_s / self.elapsed if self.elapsed else None

    @property
    def req_per_cpu_s(self) -> float | None:
        if not self.server_cpu_s or self.status != "ok":
            return None
        return self.requests / self.server_cpu_s


@dataclass
class Summary:
    scenario: str
    server: str
    status: str
    rps: float | None  # best or median of the ok runs, per --stat
    runs: list[float | None]
    failures: int | None
    cpu_percent: float | None  # server CPU use during the run picked for rps (100 = one core)
    req_per_cpu_s: float | None  # requests per server CPU-second (best or median, per --stat)
    note: str
    ratio: float | None = None
    cpu_ratio: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    ratio2: float | None = None  # vs BASELINE2 (uvicorn-h11), req/s
    cpu_ratio2: float | None = None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def tool_version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    out = (proc.stdout + proc.stderr).strip().splitlines()
    return out[0].strip() if out else "unknown"


def pin(cpu: str | None, argv: list[str]) -> list[str]:
    return argv if cpu is None else ["taskset", "-c", cpu, *argv]


def make_tls_files(directory: Path) -> TLSFiles | None:
    try:
        import trustme
    except ImportError:
        return None
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "localhost")
    files = TLSFiles(directory / "cert.pem", directory / "key.pem", directory / "ca.pem")
    files.certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(files.keyfile))
    ca.cert_pem.write_to_path(str(files.cafile))
    return files


# --------------------------------------------------------------------------- servers


def server_supports(server: str, scenario: str) -> bool:
    if server.startswith("uvicorn"):
        return scenario in H1_SCENARIOS or scenario == "mem"
    return True


def server_command(
    server: str, app: str, port: int, tls: TLSFiles | None, workdir: Path
) -> list[str]:
    bind = f"{HOST}:{port}"
    py = sys.executable
    if server in ("trio_http", "trio_http-h11"):
        parser = "h11" if server == "trio_http-h11" else "httptools"
        cmd = [py, "-m", "trio_http", app, "--bind", bind, "--log-level", "warning",
               "--h1-parser", parser]
        if tls is not None:
            cmd += ["--certfile", str(tls.certfile), "--keyfile", str(tls.keyfile)]
        return cmd
    if server == "hypercorn-trio":
        # Hypercorn closes a connection after 1000 requests by default
        # (keep_alive_max_requests); h2load does not reconnect HTTP/2 clients and would
        # count every request left as failed, so lift the limit: the others have none.
        config = workdir / "hypercorn.toml"
        config.write_text("keep_alive_max_requests = 1000000000\n")
        cmd = [py, "-m", "hypercorn", "--config", str(config), "--worker-class", "trio"]
        cmd += ["--bind", bind, "--log-level", "warning"]
        if tls is not None:
            cmd += ["--certfile", str(tls.certfile), "--keyfile", str(tls.keyfile)]
        return [*cmd, app]
    if server in ("uvicorn-h11", "uvicorn-httptools"):
        http = server.split("-", 1)[1]
        cmd = [py, "-m", "uvicorn", "--http", http, "--no-access-log", "--log-level", "warning"]
        cmd += ["--host", HOST, "--port", str(port), "--lifespan", "on"]
        if tls is not None:
            cmd += ["--ssl-certfile", str(tls.certfile), "--ssl-keyfile", str(tls.keyfile)]
        return [*cmd, app]
    raise ValueError(f"unknown server {server!r}")


class ServerFailed(Exception):
    pass


def tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the server's process group, then SIGKILL it after ``grace`` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        start = time.monotonic()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log(f"    server pid {proc.pid} still running {grace}s after SIGTERM; SIGKILL")
        else:
            took = time.monotonic() - start
            if took > 1.0:
                log(f"    server pid {proc.pid} took {took:.1f}s to exit after SIGTERM")
    # Kill whatever is left in the group (e.g. worker processes), and reap.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def wait_for_port(proc: subprocess.Popen[bytes], port: int, timeout: float, logfile: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerFailed(f"exited with code {proc.returncode}: {tail(logfile)}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    raise ServerFailed(f"port {port} not accepting after {timeout:.0f}s: {tail(logfile)}")


@contextlib.contextmanager
def running_server(
    cmd: list[str], port: int, logfile: Path, start_timeout: float, stop_grace: float
) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    with logfile.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killpg reaches worker children
        )
    try:
        wait_for_port(proc, port, start_timeout, logfile)
        yield proc
    finally:
        stop_process(proc, stop_grace)


def sanity_check(port: int, tls: TLSFiles | None, app: str, body: bytes) -> str:
    """One HTTP/1.1 request; returns "" if the response looks right, else a short note."""
    conn: http.client.HTTPConnection
    if tls is not None:
        ctx = ssl.create_default_context(cafile=str(tls.cafile))
        ctx.set_alpn_protocols(["http/1.1"])
        conn = http.client.HTTPSConnection(HOST, port, timeout=5, context=ctx)
    else:
        conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        if app == "echo":
            conn.request("POST", "/", body=body)
        else:
            conn.request("GET", "/")
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return f"sanity request failed: {exc!r}"
    finally:
        conn.close()
    if resp.status != 200:
        return f"sanity request got status {resp.status}"
    expected = {"hello": b"Hello, world!", "echo": body}.get(app)
    if expected is not None and data != expected:
        return f"sanity request got unexpected body ({len(data)} bytes)"
    if app == "big" and len(data) != 1024 * 1024:
        return f"sanity request got {len(data)} bytes, expected 1 MiB"
    return ""


# --------------------------------------------------------------------------- load tools

WRK_RPS = re.compile(r"Requests/sec:\s*([\d.]+)")
WRK_TOTAL = re.compile(r"(\d+) requests in ")
WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_PCT = re.compile(r"^\s*(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
H2_RPS = re.compile(r"finished in [\d.]+\w*, ([\d.]+) req/s")
H2_REQS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
    r"(\d+) failed, (\d+) errored, (\d+) timeout"
)
H2_CODES = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
H2_PROTO = re.compile(r"Application protocol: (\S+)")


@dataclass
class Parsed:
    rps: float | None
    requests: int
    failures: int
    note: str = ""
    p50_ms: float | None = None
    p99_ms: float | None = None


def wrk_latency(out: str) -> tuple[float | None, float | None]:
    """p50 and p99 in ms from ``wrk --latency`` output."""
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    got = {int(m.group(1)): float(m.group(2)) * scale[m.group(3)] for m in WRK_PCT.finditer(out)}
    return got.get(50), got.get(99)


def h2load_latency(log: Path) -> tuple[float | None, float | None]:
    """p50 and p99 in ms from an ``h2load --log-file`` (start, status, duration in us)."""
    try:
        durations = sorted(
            int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.strip()
        )
    except (OSError, IndexError, ValueError):
        return None, None
    if not durations:
        return None, None
    def q(p: float) -> float:
        return durations[min(len(durations) - 1, int(p * len(durations)))] / 1000.0
    return q(0.50), q(0.99)


def parse_wrk(out: str) -> Parsed:
    m = WRK_RPS.search(out)
    total = WRK_TOTAL.search(out)
    failures = 0
    sock = WRK_SOCKET.search(out)
    if sock:
        failures += sum(int(g) for g in sock.groups())
    non2xx = WRK_NON2XX.search(out)
    if non2xx:
        failures += int(non2xx.group(1))
    p50, p99 = wrk_latency(out)
    return Parsed(
        rps=float(m.group(1)) if m else None,
        requests=int(total.group(1)) if total else 0,
        failures=failures,
        p50_ms=p50,
        p99_ms=p99,
    )


def parse_h2load(out: str, expect_proto: str | None) -> Parsed:
    m = H2_RPS.search(out)
    reqs = H2_REQS.search(out)
    codes = H2_CODES.search(out)
    proto = H2_PROTO.search(out)
    succeeded = failures = 0
    if reqs:
        _total, _started, _done, ok, failed, errored, timeout = (int(g) for g in reqs.groups())
        succeeded = ok
        failures += failed + errored + timeout
    if codes:
        failures += int(codes.group(3)) + int(codes.group(4))  # 4xx + 5xx
    note = ""
    if expect_proto is not None:
        got = proto.group(1) if proto else "none"
        if got != expect_proto:
            note = f"negotiated {got!r}, expected {expect_proto!r}"
    if "No protocol negotiated" in out:
        note = "no protocol negotiated"
    return Parsed(
        rps=float(m.group(1)) if m else None, requests=succeeded, failures=failures, note=note
    )


@dataclass(frozen=True)
class LoadConfig:
    duration: int
    warmup: int
    h1_tool: str
    h1_connections: int
    h2_clients: int
    h2_streams: int
    client_cpu: str | None
    app: str | None  # overrides SCENARIO_APP for h1, h2c, h2tls
    body_file: Path | None
    wrk_script: Path | None
    h2load_mode: str = "count"
    h2load_log: Path | None = None


CALIBRATION_REQUESTS = 1000
MAX_FAILURE_SHARE = 0.01  # a run with more failed requests than this is not a figure


def load_command(
    scenario: str, port: int, cfg: LoadConfig, duration: int, requests: int | None = None
) -> list[str]:
    """The load generator's command line: ``duration`` seconds, or ``requests`` (h2load)."""
    if scenario in H1_SCENARIOS and cfg.h1_tool == "wrk":
        conns = cfg.h1_connections if scenario == "h1" else min(cfg.h1_connections, 10)
        cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "5s", "--latency"]
        if scenario == "h1post" and cfg.wrk_script is not None:
            cmd += ["-s", str(cfg.wrk_script)]
        return pin(cfg.client_cpu, [*cmd, f"http://{HOST}:{port}/"])
    cmd = ["h2load", "-t1", *(["-n", str(requests)] if requests else ["-D", str(duration)])]
    if cfg.h2load_log is not None and not (requests == CALIBRATION_REQUESTS):
        cmd += ["--log-file", str(cfg.h2load_log)]
    if scenario in H1_SCENARIOS:
        cmd += ["--h1", "-c", str(cfg.h1_connections), "-m", "1"]
        url = f"http://{HOST}:{port}/"
        if scenario == "h1post" and cfg.body_file is not None:
            cmd += ["-d", str(cfg.body_file)]
    elif scenario == "h2c":
        cmd += ["-c", str(cfg.h2_clients), "-m", str(cfg.h2_streams)]
        url = f"http://{HOST}:{port}/"
    elif scenario == "h2big":
        # 1 MiB per response: flow control and framing, not request handling, dominate.
        cmd += ["-c", str(cfg.h2_clients), "-m", "1", "-w", "24", "-W", "24"]
        url = f"http://{HOST}:{port}/"
    elif scenario == "h2tls":
        cmd += ["-c", str(cfg.h2_clients), "-m", str(cfg.h2_streams), "--npn-list=h2"]
        url = f"https://{HOST}:{port}/"
    else:
        raise ValueError(scenario)
    return pin(cfg.client_cpu, [*cmd, url])


def run_tool(cmd: list[str], timeout: float) -> tuple[str, int | None]:
    """Run a load generator; returns (output, exit code or None if it overran and was killed)."""
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""
        text = out.decode(errors="replace") if isinstance(out, bytes) else out
        return text, None
    return proc.stdout + proc.stderr, proc.returncode


def group_cpu_seconds(pgid: int) -> float:
    """User+system CPU seconds used so far by the processes of one process group."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # pgrp; utime, stime, cutime, cstime follow at 11..14
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def calibrate(scenario: str, port: int, cfg: LoadConfig, margin: float) -> float | None:
    """Warm up with fixed-count h2load runs (at least one, about ``cfg.warmup`` seconds in
    all) and return the last run's rate in req/s, or None if it produced none."""
    cmd = load_command(scenario, port, cfg, 0, requests=CALIBRATION_REQUESTS)
    rate = None
    start = time.monotonic()
    for _ in range(20):
        out, rc = run_tool(cmd, margin)
        if rc is None:
            return None
        rate = parse_h2load(out, None).rps
        if not rate or time.monotonic() - start >= cfg.warmup:
            break
    return rate


def measure(scenario: str, port: int, cfg: LoadConfig, pgid: int) -> RunResult:
    res = RunResult(scenario=scenario, server="", repeat=0, status="failed")
    margin = 30.0
    timeout = cfg.duration + margin
    requests = None
    if scenario not in H1_SCENARIOS or cfg.h1_tool == "h2load":
        if cfg.h2load_mode == "count":
            # A fixed request count sized to last about --duration seconds: every stream
            # completes, whereas h2load -D aborts in-flight streams at the end, which
            # crashes hypercorn 0.18's trio worker (BusyResourceError).
            rate = calibrate(scenario, port, cfg, margin)
            if rate:
                requests = min(max(int(rate * cfg.duration), 100), 50_000_000)
                timeout = 3 * cfg.duration + margin
            else:
                res.note = "warm-up produced no rate; fell back to h2load -D"
        elif cfg.warmup:
            run_tool(load_command(scenario, port, cfg, cfg.warmup), cfg.warmup + margin)
    elif cfg.warmup:  # a separate, unmeasured run, so the CPU figure covers only the real one
        run_tool(load_command(scenario, port, cfg, cfg.warmup), cfg.warmup + margin)
    cmd = load_command(scenario, port, cfg, cfg.duration, requests)
    res.command = cmd
    cpu_before = group_cpu_seconds(pgid)
    started = time.monotonic()
    out, rc = run_tool(cmd, timeout)
    res.elapsed = time.monotonic() - started
    res.server_cpu_s = group_cpu_seconds(pgid) - cpu_before
    res.measured = rc is not None
    if rc is None:
        res.status = "timeout"
        res.note = "load generator overran its time limit and was killed"
        return res
    if scenario in H1_SCENARIOS and cfg.h1_tool == "wrk":
        parsed = parse_wrk(out)
    else:
        parsed = parse_h2load(
            out, None if scenario in H1_SCENARIOS else "h2" if scenario == "h2tls" else "h2c"
        )
        if cfg.h2load_log is not None:
            parsed.p50_ms, parsed.p99_ms = h2load_latency(cfg.h2load_log)
    res.rps, res.requests, res.failures = parsed.rps, parsed.requests, parsed.failures
    res.p50_ms, res.p99_ms = parsed.p50_ms, parsed.p99_ms
    res.note = "; ".join(n for n in (res.note, parsed.note) if n)
    if parsed.rps is None:
        tool = cmd[3] if cmd[0] == "taskset" else cmd[0]
        last = " | ".join(out.strip().splitlines()[-3:])
        res.note = res.note or f"{tool} exited {rc} with no result line; output ends: {last}"
    elif parsed.requests == 0:
        res.note = res.note or "no successful requests"
    elif parsed.failures > MAX_FAILURE_SHARE * (parsed.requests + parsed.failures):
        res.status = "errors"
        res.note = "; ".join(
            n
            for n in (
                res.note,
                f"{parsed.failures} of {parsed.requests + parsed.failures} requests failed",
            )
            if n
        )
    elif not parsed.note:
        res.status = "ok"
        if res.note:
            res.note = ""  # a fallback note is not worth repeating for a good run
    return res


# --------------------------------------------------------------------------- driver


def run_one(
    scenario: str,
    server: str,
    repeat: int,
    args: argparse.Namespace,
    cfg: LoadConfig,
    tls: TLSFiles | None,
    workdir: Path,
    body: bytes,
) -> RunResult:
    if not server_supports(server, scenario):
        return RunResult(scenario, server, repeat, "n/a", note="protocol not supported")
    use_tls = scenario == "h2tls"
    if use_tls and tls is None:
        return RunResult(scenario, server, repeat, "failed", note="no certificates (trustme)")
    port = free_port()
    app_name = scenario_app(scenario, args.app)
    app = f"benchmarks.apps:{app_name}"
    cmd = pin(args.server_cpu, server_command(server, app, port, tls if use_tls else None, workdir))
    logfile = workdir / f"{server}-{scenario}-{repeat}.log"
    notes: list[str] = []
    try:
        with running_server(cmd, port, logfile, args.start_timeout, args.stop_grace) as proc:
            notes.append(sanity_check(port, tls if use_tls else None, app_name, body))
            if scenario == "mem":
                res = measure_memory(port, proc.pid)
            else:
                res = measure(scenario, port, cfg, proc.pid)
            # A server that died or wedged part-way (e.g. a crashed worker behind a live
            # master process) must not be reported as a valid figure.
            if proc.poll() is not None:
                res.status = "failed"
                notes.append(f"server exited with code {proc.returncode} during the load")
            else:
                after = sanity_check(port, tls if use_tls else None, app_name, body)
                if after:
                    res.status = "failed"
                    notes.append(f"server unresponsive after the load ({after})")
    except ServerFailed as exc:
        return RunResult(
            scenario, server, repeat, "failed", note=f"server failed: {exc}", command=cmd
        )
    res.tracebacks, res.last_error = log_errors(logfile)
    res.server, res.repeat = server, repeat
    res.note = "; ".join(n for n in (res.note, *notes) if n)
    return res


def scenario_app(scenario: str, override: str | None) -> str:
    if override is not None and scenario in ("h1", "h2c", "h2tls"):
        return override
    return SCENARIO_APP[scenario]


def group_rss_bytes(pgid: int) -> int:
    """Resident set size summed over the processes of one process group."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                total += int((stat.parent / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


def measure_memory(port: int, pgid: int, n: int = MEM_CONNECTIONS) -> RunResult:
    """Open ``n`` keep-alive connections that each complete one GET and then stay idle; the
    figure is the growth of the server's RSS divided by ``n`` (bytes per connection)."""
    import resource

    res = RunResult(scenario="mem", server="", repeat=0, status="failed")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 200), hard))
    request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    socks: list[socket.socket] = []
    time.sleep(0.5)
    before = group_rss_bytes(pgid)
    started = time.monotonic()
    try:
        for _ in range(n):
            s = socket.create_connection((HOST, port), timeout=10)
            socks.append(s)
            s.sendall(request)
            got = b""
            while b"Hello, world!" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    res.note = f"connection {len(socks)} closed before its response"
                    return res
                got += chunk
        time.sleep(1.0)  # let the server settle (GC, buffers) with every connection idle
        after = group_rss_bytes(pgid)
        alive = 0
        for s in socks:
            s.setblocking(False)
            try:
                if s.recv(1):
                    alive += 1  # unexpected bytes, but still open
            except BlockingIOError:
                alive += 1  # nothing to read and not closed: still open
            except OSError:
                pass
    except OSError as exc:
        res.note = f"after {len(socks)} connections: {exc!r}"
        return res
    finally:
        for s in socks:
            s.close()
    res.elapsed = time.monotonic() - started
    res.requests = n
    res.rss_per_conn = (after - before) / n
    res.status = "ok" if alive == n else "errors"
    if alive != n:
        res.note = f"only {alive} of {n} connections still open after 1 s"
    res.measured = True
    return res


def run_external(scenario: str, args: argparse.Namespace) -> int:
    """ws and h3: run the other harness scripts, which print their own table."""
    script = REPO_ROOT / "benchmarks" / ("ws_echo.py" if scenario == "ws" else "h3_bench.py")
    cmd = [sys.executable, str(script), "--duration", str(args.duration),
           "--repeats", str(args.repeats)]
    log("$ " + " ".join(cmd))
    print(f"\n## {scenario}: {SCENARIO_DESCRIPTIONS[scenario]}\n", flush=True)
    return subprocess.run(cmd, cwd=REPO_ROOT, timeout=60 * 30).returncode


def log_errors(logfile: Path) -> tuple[int, str]:
    """Count the tracebacks a server wrote to its log; also return the last error line."""
    try:
        lines = logfile.read_text(errors="replace").splitlines()
    except OSError:
        return 0, ""
    count = sum(1 for line in lines if "Traceback (most recent call last)" in line)
    if not count:
        return 0, ""
    errors = [
        m.group(1)
        for line in lines
        if (m := re.match(r"^[\s|+]*([\w.]+(?:Error|Exception|Group)\b.*)$", line))
    ]
    return count, (errors[-1] if errors else lines[-1])[:160]


def pick(values: list[float], stat: str) -> float | None:
    if not values:
        return None
    return max(values) if stat == "best" else statistics.median(values)


def tb_note(runs: list[RunResult]) -> list[str]:
    total = sum(r.tracebacks for r in runs)
    if not total:
        return []
    last = next(r.last_error for r in reversed(runs) if r.tracebacks)
    return [f"server logged {total} traceback(s) in {len(runs)} run(s), last: {last}"]


def summarise(
    results: list[RunResult], scenarios: Sequence[str], servers: Sequence[str], stat: str
) -> list[Summary]:
    out: list[Summary] = []
    for scenario in scenarios:
        group: dict[str, Summary] = {}
        for server in servers:
            runs = [r for r in results if r.scenario == scenario and r.server == server]
            if not runs:
                continue
            ok = [r for r in runs if r.status == "ok"
                  and (r.rps is not None or r.rss_per_conn is not None)]
            if all(r.status == "n/a" for r in runs):
                status = "n/a"
            elif ok:
                status = "ok" if len(ok) == len(runs) else "partial"
            else:
                status = next(r.status for r in runs if r.status != "ok")
            rps = pick([r.rps for r in ok if r.rps is not None], stat)
            chosen = min(ok, key=lambda r: abs((r.rps or 0.0) - (rps or 0.0)), default=None)
            group[server] = Summary(
                scenario=scenario,
                server=server,
                status=status,
                rps=rps,
                runs=[r.rps if r.status == "ok" else None for r in runs],
                failures=sum(r.failures for r in runs) if any(r.measured for r in runs) else None,
                cpu_percent=chosen.cpu_percent if chosen else None,
                req_per_cpu_s=pick([v for r in ok if (v := r.req_per_cpu_s) is not None], stat),
                note="; ".join(sorted({r.note for r in runs if r.note}) + tb_note(runs)),
                p50_ms=chosen.p50_ms if chosen else None,
                p99_ms=chosen.p99_ms if chosen else None,
            )
            if scenario == "mem":
                # Lower is better: report the smallest growth (or the median).
                mem = [r.rss_per_conn for r in runs if r.status == "ok" and r.rss_per_conn]
                group[server].rps = (min(mem) if stat == "best" else statistics.median(mem)
                                     ) if mem else None
                group[server].status = "ok" if mem else group[server].status
        for attr, cpu_attr, name in (("ratio", "cpu_ratio", BASELINE),
                                     ("ratio2", "cpu_ratio2", BASELINE2)):
            base = group.get(name)
            for s in group.values():
                if base is not None and s.rps is not None and base.rps:
                    setattr(s, attr, s.rps / base.rps)
                if base is not None and s.req_per_cpu_s is not None and base.req_per_cpu_s:
                    setattr(s, cpu_attr, s.req_per_cpu_s / base.req_per_cpu_s)
        out.extend(group.values())
    return out


def fmt(v: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def figure(s: Summary) -> str:
    if s.scenario == "mem":
        return fmt(s.rps, ",.0f", " B/conn")
    if s.scenario in BIG_SCENARIOS and s.rps is not None:
        return f"{fmt(s.rps)} ({s.rps * 1.0:,.0f} MiB/s)"
    return fmt(s.rps)


def render_table(summaries: list[Summary], stat: str) -> str:
    header = [
        "scenario",
        "server",
        f"req/s ({stat})",
        "runs",
        "fail",
        "p50 ms",
        "p99 ms",
        "server CPU",
        "req/CPU-s",
        f"vs {BASELINE}",
        "per CPU-s",
        f"vs {BASELINE2}",
        "per CPU-s",
        "status",
    ]
    rows = [header]
    for s in summaries:
        rows.append(
            [
                s.scenario,
                s.server,
                figure(s),
                " / ".join(fmt(v) for v in s.runs) if s.scenario != "mem" else "-",
                fmt(s.failures, "d"),
                fmt(s.p50_ms, ".2f"),
                fmt(s.p99_ms, ".2f"),
                fmt(s.cpu_percent, ".0f", "%"),
                fmt(s.req_per_cpu_s),
                fmt(s.ratio, ".2f", "x"),
                fmt(s.cpu_ratio, ".2f", "x"),
                fmt(s.ratio2, ".2f", "x"),
                fmt(s.cpu_ratio2, ".2f", "x"),
                s.status,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    ratio_lines = []
    for scenario in dict.fromkeys(s.scenario for s in summaries):
        for subject in SUBJECTS:
            subj = next(
                (s for s in summaries if s.scenario == scenario and s.server == subject), None
            )
            if subj is None or (subj.ratio is None and subj.ratio2 is None):
                continue
            ratio_lines.append(
                f"  {scenario} {subject}: vs {BASELINE} {fmt(subj.ratio, '.2f')} (req/s), "
                f"{fmt(subj.cpu_ratio, '.2f')} (req/CPU-s); vs {BASELINE2} "
                f"{fmt(subj.ratio2, '.2f')} (req/s), {fmt(subj.cpu_ratio2, '.2f')} (req/CPU-s)"
            )
    notes = [
        f"  {s.scenario}/{s.server}: {s.note}" for s in summaries if s.note and s.status != "n/a"
    ]
    text = "\n".join(lines)
    text += (
        "\n\nserver CPU: the server process group's user+system CPU time during the measured"
        "\nrun, as a share of one core (under 100% when the server was not the bottleneck"
        "\nor other processes competed for its core); req/CPU-s: requests per server CPU-second."
        "\nmem: growth of the server's RSS per idle keep-alive connection (lower is better; its"
        "\nratios are memory ratios). p50/p99: wrk --latency, or h2load --log-file."
    )
    if ratio_lines:
        text += f"\n\nratios ({stat}):\n" + "\n".join(ratio_lines)
    if notes:
        text += "\n\nnotes:\n" + "\n".join(notes)
    return text


def describe(args: argparse.Namespace, cfg: LoadConfig) -> str:
    h2load_len = (
        f"-n N (N = warm-up rate x {cfg.duration}s)"
        if cfg.h2load_mode == "count"
        else f"-D {cfg.duration}"
    )
    h1 = (
        f"wrk -t1 -c{cfg.h1_connections} -d{cfg.duration}s (keep-alive GET)"
        if cfg.h1_tool == "wrk"
        else f"h2load --h1 -t1 -c{cfg.h1_connections} -m1 {h2load_len}"
    )
    h2 = f"h2load -t1 -c{cfg.h2_clients} -m{cfg.h2_streams} {h2load_len}"
    pinning = (
        f"server taskset -c {args.server_cpu}, load generator taskset -c {args.client_cpu}"
        if args.server_cpu is not None
        else "none (taskset unavailable or --no-pin)"
    )
    lines = [
        "# trio_http load benchmark",
        f"date:        {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        "apps:        benchmarks.apps: "
        + ", ".join(f"{sc}={scenario_app(sc, args.app)}" for sc in SCENARIO_APP)
        + f" (h1post: POST body {args.body_size} bytes)",
        f"h1:          {h1} --latency (h1post, h1big: at most 10 connections)",
        f"h2c:         {h2} http:// (prior knowledge)",
        f"h2tls:       {h2} --npn-list=h2 https:// (ALPN h2, trustme cert)",
        f"h2big:       h2load -t1 -c{cfg.h2_clients} -m1 -w24 -W24 http:// (1 MiB responses)",
        f"mem:         {MEM_CONNECTIONS} connections, one GET each, then idle 1 s; "
        "server RSS growth / connections",
        f"warm-up:     {cfg.warmup}s per run, not counted (h2load: repeated -n "
        f"{CALIBRATION_REQUESTS} runs, at least one)",
        f"repeats:     {args.repeats} per server/scenario, servers alternating, fresh server "
        f"process per run; table shows {args.stat}",
        f"pinning:     {pinning}",
        f"python:      {platform.python_implementation()} {platform.python_version()}",
        f"cpu:         {cpu_model()} ({os.cpu_count()} logical CPUs)",
        f"kernel:      {platform.system()} {platform.release()}",
        f"load avg:    {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start "
        "(other processes on the machine skew the figures)",
        f"tools:       {tool_version(['wrk', '-v'])}; {tool_version(['h2load', '--version'])}",
        "packages:    "
        + ", ".join(
            f"{p} {dist_version(p)}"
            for p in ("trio_http", "hypercorn", "uvicorn", "trio", "h11", "h2")
        ),
    ]
    return "\n".join(lines)


def do_install() -> int:
    log("$ " + " ".join(INSTALL_APT))
    rc = subprocess.run(INSTALL_APT).returncode
    if rc != 0:
        log("$ apt-get update && retry")
        subprocess.run(["apt-get", "update"])
        rc = subprocess.run(INSTALL_APT).returncode
    pip = [sys.executable, "-m", "pip", "install", *INSTALL_PIP]
    log("$ " + " ".join(pip))
    rc2 = subprocess.run(pip).returncode
    return rc or rc2


def split_list(values: list[str] | None, allowed: Sequence[str], what: str) -> list[str]:
    if not values:
        return list(allowed)
    out = [v for item in values for v in item.split(",") if v]
    bad = [v for v in out if v not in allowed]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed)})")
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark trio_http against hypercorn (trio) and uvicorn (h11).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--duration", type=int, default=8, help="seconds of measured load per run")
    p.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured warm-up per run")
    p.add_argument("--repeats", type=int, default=2, help="runs per server/scenario")
    p.add_argument(
        "--scenarios", nargs="+", metavar="S", default=list(DEFAULT_SCENARIOS),
        help=f"scenarios to run, from {', '.join(SCENARIOS)}"
    )
    p.add_argument(
        "--servers", nargs="+", metavar="S", default=list(SERVERS), help="servers to run"
    )
    p.add_argument("--app", choices=("hello", "echo", "big"), default=None,
                   help="override the app of h1, h2c and h2tls")
    p.add_argument("--body-size", type=int, default=POST_BODY_SIZE,
                   help="request body size for h1post (and --app echo)")
    p.add_argument("--h1-tool", choices=("wrk", "h2load"), default="wrk")
    p.add_argument(
        "--h2load-mode",
        choices=("count", "duration"),
        default="count",
        help="h2load with -n sized from the warm-up to last --duration s, or with -D",
    )
    p.add_argument("--h1-connections", type=int, default=50)
    p.add_argument("--h2-clients", type=int, default=10)
    p.add_argument("--h2-streams", type=int, default=10)
    p.add_argument("--server-cpu", default="0", help="CPU list for the server (taskset -c)")
    p.add_argument("--client-cpu", default="1", help="CPU list for the load generator")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument("--stat", choices=("best", "median"), default="best")
    p.add_argument(
        "--start-timeout",
        type=float,
        default=20.0,
        help="seconds to wait for a server's port to accept",
    )
    p.add_argument("--stop-grace", type=float, default=5.0, help="SIGTERM to SIGKILL delay")
    p.add_argument("--json", type=Path, help="also write raw results to this JSON file")
    p.add_argument(
        "--keep-logs", type=Path, metavar="DIR", help="keep server logs (and certs) in DIR"
    )
    p.add_argument(
        "--install",
        action="store_true",
        help="apt-get install nghttp2-client wrk and pip install hypercorn uvicorn trustme first",
    )
    args = p.parse_args(argv)
    args.scenarios = split_list(args.scenarios, SCENARIOS, "scenario")
    args.servers = split_list(args.servers, SERVERS, "server")
    if args.duration < 1 or args.repeats < 1 or args.warmup < 0:
        p.error("--duration and --repeats must be >= 1, --warmup >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.install and do_install() != 0:
        log("installation failed")
        return 2

    needed = set()
    if set(H1_SCENARIOS) & set(args.scenarios):
        needed.add(args.h1_tool)
    if set(H2_SCENARIOS) & set(args.scenarios):
        needed.add("h2load")
    missing = sorted(t for t in needed if shutil.which(t) is None)
    if missing:
        log(f"missing load generator(s): {', '.join(missing)}")
        log(f"install them with:  {' '.join(INSTALL_APT)}")
        log("(or rerun with --install, which also pip-installs hypercorn, uvicorn and trustme)")
        return 2

    if args.no_pin or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        if not args.no_pin:
            log("warning: taskset unavailable or fewer than 2 CPUs; running unpinned")
        args.server_cpu = args.client_cpu = None

    with contextlib.ExitStack() as stack:
        if args.keep_logs is not None:
            workdir = args.keep_logs
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_")))
        body = b"b" * args.body_size
        body_file = wrk_script = None
        # h1post (and --app echo) send this body.
        body_file = workdir / "body.bin"
        body_file.write_bytes(body)
        wrk_script = workdir / "post.lua"
        wrk_script.write_text(
            f'wrk.method = "POST"\nwrk.body = string.rep("b", {args.body_size})\n'
            'wrk.headers["Content-Type"] = "application/octet-stream"\n'
        )
        tls = make_tls_files(workdir) if "h2tls" in args.scenarios else None
        if "h2tls" in args.scenarios and tls is None:
            log("warning: trustme is not installed (pip install trustme); h2tls will fail")
        cfg = LoadConfig(
            duration=args.duration,
            warmup=args.warmup,
            h1_tool=args.h1_tool,
            h1_connections=args.h1_connections,
            h2_clients=args.h2_clients,
            h2_streams=args.h2_streams,
            client_cpu=args.client_cpu,
            app=args.app,
            body_file=body_file,
            wrk_script=wrk_script,
            h2load_mode=args.h2load_mode,
            h2load_log=workdir / "h2load.log",
        )
        print(describe(args, cfg), flush=True)
        print(flush=True)

        results: list[RunResult] = []
        external = [sc for sc in args.scenarios if sc in ("ws", "h3")]
        for scenario in [sc for sc in args.scenarios if sc not in external]:
            for repeat in range(1, args.repeats + 1):
                order = args.servers if repeat % 2 else list(reversed(args.servers))
                for server in order:
                    res = run_one(scenario, server, repeat, args, cfg, tls, workdir, body)
                    results.append(res)
                    if res.status != "n/a":
                        log(
                            f"  {scenario:6} {server:15} run {repeat}: {res.status:7} "
                            f"{fmt(res.rps):>9} req/s  failures={res.failures}  "
                            f"server CPU {fmt(res.cpu_percent, '.0f', '%')}  "
                            f"{fmt(res.req_per_cpu_s)} req/CPU-s"
                            + (f"  p50 {fmt(res.p50_ms, '.2f')} ms p99 "
                               f"{fmt(res.p99_ms, '.2f')} ms" if res.p50_ms else "")
                            + (f"  {res.rss_per_conn:,.0f} B/conn" if res.rss_per_conn else "")
                            + (f"  ({res.note})" if res.note else "")
                            + (
                                f"  [{res.tracebacks} traceback(s) logged]"
                                if res.tracebacks
                                else ""
                            )
                        )
                    time.sleep(0.5)

    internal = [sc for sc in args.scenarios if sc not in ("ws", "h3")]
    summaries = summarise(results, internal, args.servers, args.stat)
    print(render_table(summaries, args.stat), flush=True)
    for scenario in external:
        run_external(scenario, args)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "results": [
                        {
                            **asdict(r),
                            "cpu_percent": r.cpu_percent,
                            "req_per_cpu_s": r.req_per_cpu_s,
                        }
                        for r in results
                    ],
                    "summary": [asdict(s) for s in summaries],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
