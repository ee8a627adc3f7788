"""Embed trio_http in a Trio program: start it with nursery.start, use it, cancel it."""

from functools import partial

import httpx
import trio

from trio_http import serve_asgi


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body",
                "body": f"Hello over HTTP/{scope['http_version']}!\n".encode()})


async def main():
    async with trio.open_nursery() as nursery:
        # start() returns once the server listens: port 0 is resolved in server.urls.
        server = await nursery.start(partial(serve_asgi, app, binds=["127.0.0.1:0"]))
        print("serving on", server.urls[0])

        async with httpx.AsyncClient() as client:
            response = await client.get(server.urls[0])
        print(response.status_code, response.text.strip())
        print("requests served:", server.statistics()["requests_total"])

        # Cancelling the nursery is a graceful shutdown of the server.
        nursery.cancel_scope.cancel()
    print("stopped")


if __name__ == "__main__":
    trio.run(main)
