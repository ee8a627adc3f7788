"""A Trio program that serves until SIGINT or SIGTERM, then shuts down gracefully."""

import signal
from functools import partial

import trio

from trio_http import Config, serve_asgi


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"still here\n"})


async def main():
    config = Config(graceful_timeout=10.0)  # seconds in-flight requests get at shutdown
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(serve_asgi, app, binds=["127.0.0.1:0"], config=config)
            )
            print("serving on", server.urls[0], flush=True)
            async for signum in signals:
                print("got", signal.Signals(signum).name, "- shutting down", flush=True)
                nursery.cancel_scope.cancel()  # the whole shutdown protocol
                break
    print("bye", flush=True)


if __name__ == "__main__":
    trio.run(main)
