"""Small ASGI apps the CLI tests serve from a subprocess, and raw protocol peers (``peers``)
shared by the HTTP/1.1, HTTP/2 and shutdown tests."""
