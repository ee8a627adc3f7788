"""The floor set by the protocol libraries themselves: microseconds of CPU per request that h11
and h2 need on their own, with no sockets, no ASGI and no scheduler, and so the most requests
per second any server built on them could answer on one core.

How it is taken: a client and a server connection of the library talk through memory. Per
request the server side parses a request head as h2load sends it and serialises a 13-byte
"Hello, world!" response with the same fields trio_http sends (content-type, content-length,
server, date); only the server side's calls are timed (``time.perf_counter`` around them). h2
is configured as trio_http configures it (its own field checks off); h2 gets 10 requests per
read, as with ``h2load -m 10``. The client side's work and the bytes' trip through memory are
not counted.

    python benchmarks/library_floor.py                # 20,000 requests each
    python benchmarks/library_floor.py --requests 2000

Compare the ceiling with the load harness's figures (``benchmarks/load.py``): a server cannot
go faster than its protocol library, and the kernel's share (about 12 us per keep-alive
request here) comes on top.
"""

from __future__ import annotations

import argparse
import time

import h2.config
import h2.connection
import h2.events
import h11

REQUEST_FIELDS = [
    (b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"),
    (b":authority", b"127.0.0.1:8000"), (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"), (b"user-agent", b"h2load nghttp2/1.52.0"),
]
RESPONSE_FIELDS = [
    (b"content-type", b"text/plain"), (b"content-length", b"13"), (b"server", b"trio_http"),
    (b"date", b"Sat, 21 Nov 2026 16:00:00 GMT"),
]
BODY = b"Hello, world!"


def h11_floor(requests: int) -> float:
    """Seconds of server-side h11 work per request (keep-alive GET, one per read)."""
    raw = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: h2load nghttp2/1.52.0\r\n"
           b"Accept: */*\r\nAccept-Encoding: gzip, deflate\r\n\r\n")
    server = h11.Connection(h11.SERVER)
    spent = 0.0
    for _ in range(requests):
        start = time.perf_counter()
        server.receive_data(raw)
        event = server.next_event()
        assert type(event) is h11.Request
        assert type(server.next_event()) is h11.EndOfMessage
        out = server.send(h11.Response(status_code=200, headers=RESPONSE_FIELDS))
        assert out is not None
        server.send(h11.Data(data=BODY))
        server.send(h11.EndOfMessage())
        server.start_next_cycle()
        spent += time.perf_counter() - start
    return spent / requests


def h2_floor(requests: int, streams: int = 10) -> float:
    """Seconds of server-side h2 work per request (``streams`` requests per read)."""
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    server = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, header_encoding=None,
        validate_inbound_headers=False, normalize_inbound_headers=False,
        validate_outbound_headers=False, normalize_outbound_headers=False,
    ))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    server.data_to_send()
    response = [(b":status", b"200"), *RESPONSE_FIELDS]
    spent = 0.0
    done = answered = 0
    while done < requests:
        for _ in range(streams):
            client.send_headers(client.get_next_available_stream_id(), REQUEST_FIELDS,
                                end_stream=True)
        data = client.data_to_send()  # with the WINDOW_UPDATEs for the last responses
        start = time.perf_counter()
        for event in server.receive_data(data):
            if type(event) is h2.events.RequestReceived:
                server.send_headers(event.stream_id, response)
                server.send_data(event.stream_id, BODY, end_stream=True)
        out = server.data_to_send()
        spent += time.perf_counter() - start
        for event in client.receive_data(out):
            if type(event) is h2.events.DataReceived:
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif type(event) is h2.events.StreamEnded:
                answered += 1
        done += streams
    assert answered == done, "every request gets its whole response"
    return spent / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    print("server-side protocol library work per request (no I/O, no ASGI, no scheduler):")
    for name, floor in (("h11", h11_floor), ("h2 (h2c, 10 streams per read)", h2_floor)):
        per_request = min(floor(args.requests) for _ in range(3))
        print(f"  {name:32} {per_request * 1e6:6.1f} us per request -> at most "
              f"{1 / per_request:9,.0f} requests/s on one core (best of 3 x {args.requests:,})")


if __name__ == "__main__":
    main()
