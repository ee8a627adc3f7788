"""A small FastAPI app for the command-line tutorial.

    python -m trio_http fastapi_app:app --dev-tls --bind 127.0.0.1:8443 --quic-bind 127.0.0.1:8443
"""

from fastapi import FastAPI, Request

app = FastAPI()
items: dict[int, str] = {}


@app.get("/")
async def hello(request: Request):
    return {"message": "Hello!", "http_version": request.scope["http_version"]}


@app.put("/items/{item_id}")
async def put_item(item_id: int, request: Request):
    items[item_id] = (await request.body()).decode()
    return {"item_id": item_id, "stored": items[item_id]}


@app.get("/items/{item_id}")
async def get_item(item_id: int):
    return {"item_id": item_id, "value": items.get(item_id)}
