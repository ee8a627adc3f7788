"""Serve TLS from a Trio program and watch ALPN choose the protocol.

trustme stands in for a real certificate here; in production pass your own PEM files.
"""

import ssl
import tempfile
from functools import partial
from pathlib import Path

import trio
import trustme

from trio_http import Config, serve_asgi


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"secure\n"})


async def negotiated(port, ca, offer):
    """Do a TLS handshake offering the ALPN protocols in `offer`; return the server's pick."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(offer)
    stream = await trio.open_ssl_over_tcp_stream("localhost", port, ssl_context=context)
    await stream.do_handshake()
    picked = stream.selected_alpn_protocol()
    await stream.aclose()
    return picked


async def main():
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        certfile, keyfile = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert.private_key_pem.write_to_path(str(keyfile))
        for blob in cert.cert_chain_pems:  # the leaf first, then its chain
            blob.write_to_path(str(certfile), append=True)

        config = Config(certfile=str(certfile), keyfile=str(keyfile),
                        alpn_protocols=("h2", "http/1.1"), tls_handshake_timeout=5.0)
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(serve_asgi, app, binds=["127.0.0.1:0"], config=config)
            )
            print(server.urls[0])
            print("browser-like client:", await negotiated(server.port, ca, ["h2", "http/1.1"]))
            print("HTTP/1.1-only client:", await negotiated(server.port, ca, ["http/1.1"]))
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
