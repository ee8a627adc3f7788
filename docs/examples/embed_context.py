"""open_asgi_server(): the server as an async context manager, beside other work."""

import httpx
import trio

from trio_http import open_asgi_server


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


async def fetch_all(url, paths):
    async with httpx.AsyncClient(base_url=url) as client:
        async with trio.open_nursery() as nursery:
            for path in paths:
                nursery.start_soon(client.get, path)


async def main():
    async with open_asgi_server(app, binds=["127.0.0.1:0"]) as server:
        await fetch_all(server.urls[0], [f"/item/{i}" for i in range(10)])
        print(server.statistics()["requests_total"], "requests served")
    # Leaving the block shut the server down gracefully.


if __name__ == "__main__":
    trio.run(main)
