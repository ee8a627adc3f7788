"""Testing the tutorial's FastAPI app against a real trio_http server, with pytest-trio.

    python -m pytest test_fastapi_app.py      (pytest-trio, with trio_mode = true or the marker)
"""

import pytest
import trio
from fastapi_app import app

from trio_http.testing import RecordingApp

pytestmark = pytest.mark.trio


async def test_hello_over_http2(trio_http_serve, trio_http_client):
    server = await trio_http_serve(app)  # HTTPS on 127.0.0.1, a free port
    client = trio_http_client(server)  # an httpx.AsyncClient that trusts the test CA
    response = await client.get("/")
    assert response.http_version == "HTTP/2"
    assert response.json() == {"message": "Hello!", "http_version": "2"}


async def test_items_round_trip(trio_http_serve, trio_http_client):
    server = await trio_http_serve(app, tls=False)  # cleartext: h2c by prior knowledge
    client = trio_http_client(server)
    assert (await client.put("/items/7", content=b"seven")).json()["stored"] == "seven"
    assert (await client.get("/items/7")).json() == {"item_id": 7, "value": "seven"}


async def test_many_requests_share_one_connection(trio_http_serve, trio_http_client):
    recorder = RecordingApp(app)  # wraps the app and records what it was sent
    server = await trio_http_serve(recorder)
    client = trio_http_client(server)
    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(client.get, f"/items/{i}")
    assert len(recorder.requests) == 20
    recorder.assert_all_http_version("2")
    assert server.statistics()["connections_total"] == 1  # multiplexed
