"""Cleartext HTTP/2 (h2c) against a plain-text bind, both ways a client can ask for it.

    python -m trio_http myapp:app --bind 127.0.0.1:8000     # then:
    python h2c_client.py http://127.0.0.1:8000/
"""

import sys

import h2.config
import h2.connection
import h2.events
import httpx
import trio


def prior_knowledge(url):
    # httpx speaks HTTP/2 on http:// only with HTTP/1.1 switched off: prior knowledge.
    with httpx.Client(http1=False, http2=True) as client:
        return client.get(url).http_version


async def upgrade(host, port):
    # RFC 7540 §3.2: an HTTP/1.1 request with Upgrade: h2c, answered 101, then HTTP/2.
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = conn.initiate_upgrade_connection()
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + settings + b"\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n")[0].decode()
        await stream.send_all(conn.data_to_send())
        events = conn.receive_data(rest)
        while not any(isinstance(e, h2.events.StreamEnded) for e in events):
            events += conn.receive_data(await stream.receive_some(65536))
        status = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
        return status_line, dict(status.headers)[b":status"].decode()


if __name__ == "__main__":
    url = httpx.URL(sys.argv[1])
    print("prior knowledge:", prior_knowledge(str(url)))
    line, status = trio.run(upgrade, url.host, url.port)
    print("upgrade:", line, "then HTTP/2 status", status)
