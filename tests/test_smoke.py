import httpx

from .conftest import hello_app


async def test_http1_and_h2_with_httpx(start_server, client_ssl_context):
    server = await start_server(hello_app, tls=True)
    async with httpx.AsyncClient(verify=client_ssl_context, http2=True) as client:
        r = await client.get(server.urls[0].replace("127.0.0.1", "localhost"))
        assert r.status_code == 200
        assert r.http_version == "HTTP/2"
        assert r.text == "hello over 2"
    async with httpx.AsyncClient(verify=client_ssl_context, http1=True) as client:
        r = await client.get(server.urls[0])
        assert r.http_version == "HTTP/1.1"
        assert r.text == "hello over 1.1"
