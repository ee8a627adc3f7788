"""A real framework app for the CLI tests: Starlette answering ``{"message": "Hello world!"}``."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"message": "Hello world!", "http_version": request.scope["http_version"]})


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"length": len(body), "http_version": request.scope["http_version"]})


app = Starlette(routes=[Route("/", hello), Route("/echo", echo, methods=["POST"])])
