"""GET a URL over HTTP/3 with aioquic's asyncio client; print the status, headers and body.

    python h3_get.py https://localhost:8443/ --cacert ~/.local/state/trio_http/dev-tls/ca.pem
"""

import argparse
import asyncio
from urllib.parse import urlsplit

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration


class H3Get(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.headers, self.body, self.done = [], b"", asyncio.Event()

    def quic_event_received(self, event):
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                self.headers += h3_event.headers
            elif isinstance(h3_event, DataReceived):
                self.body += h3_event.data
            if getattr(h3_event, "stream_ended", False):
                self.done.set()

    async def get(self, authority, path):
        stream_id = self._quic.get_next_available_stream_id()
        self.h3.send_headers(stream_id, [
            (b":method", b"GET"), (b":scheme", b"https"),
            (b":authority", authority.encode()), (b":path", path.encode()),
        ], end_stream=True)
        self.transmit()
        await self.done.wait()


async def main(url, cacert):
    parts = urlsplit(url)
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                               server_name=parts.hostname)
    config.load_verify_locations(cacert)
    async with connect(parts.hostname, parts.port or 443, configuration=config,
                       create_protocol=H3Get) as client:
        await asyncio.wait_for(client.get(parts.netloc, parts.path or "/"), timeout=10)
    for name, value in client.headers:
        print(f"{name.decode()}: {value.decode()}")
    print()
    print(client.body.decode())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--cacert", required=True, help="PEM CA file to trust")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.cacert))
