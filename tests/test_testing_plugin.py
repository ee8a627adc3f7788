"""The pytest plugin (trio_http.testing._plugin, entry point pytest11), through pytester:
generated test modules run in a subprocess, as a project using trio_http would run them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

INI = """
[pytest]
trio_mode = true
timeout = 60
filterwarnings = error::pytest.PytestUnraisableExceptionWarning
"""

APPS = '''
import httpx
import trio
from trio_http.testing import RecordingApp


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["http_version"].encode()})


async def boom(scope, receive, send):
    if scope["type"] != "http":
        return
    raise ZeroDivisionError("app exploded")
'''


def _sections(output: str) -> dict[str, str]:
    """The failure report of each test, by test name (from pytest's ``____ name ____``)."""
    parts = re.split(r"^_{3,} (\S+) _{3,}$", output, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_every_fixture_passing(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(APPS + '''
SEEN = []


async def test_serve_and_client(trio_http_serve, trio_http_client, trio_http_ca):
    rec = RecordingApp(body=b"recorded")
    server = await trio_http_serve(rec)
    assert server.ca is trio_http_ca and server.url.startswith("https://127.0.0.1:")
    r = await trio_http_client(server).post("/tls", content=b"body")
    assert (r.status_code, r.http_version, r.text) == (200, "HTTP/2", "recorded")

    plain = await trio_http_serve(rec, tls=False)
    r = await trio_http_client(plain).get("/h2c")
    assert r.http_version == "HTTP/2"

    async with trio_http_client(server, http2=False) as h1:
        assert (await h1.get("/h1")).http_version == "HTTP/1.1"
    rec.assert_requested(method="POST", path="/tls", http_version="2", body=b"body")
    assert rec.http_versions == ["2", "2", "1.1"]
    SEEN.extend([server, plain])


def test_thread_server_sync(trio_http_thread_server, trio_http_ca):
    server = trio_http_thread_server(hello)
    assert server.ca is trio_http_ca
    with httpx.Client(verify=server.ssl_context(), http2=True) as client:
        r = client.get(server.url)
    assert (r.http_version, r.text) == ("HTTP/2", "2")
    assert server.statistics()["requests_by_http_version"] == {"2": 1}
    SEEN.append(server)


async def test_thread_server_from_trio(trio_http_thread_server, trio_http_client):
    server = trio_http_thread_server(hello, tls=False)
    r = await trio_http_client(server).get("/")
    assert r.text == "2"
    # read from inside this test's own trio run, in the server's loop
    assert server.statistics()["requests_by_http_version"] == {"2": 1}
    SEEN.append(server)


def test_servers_of_earlier_tests_were_stopped():
    assert len(SEEN) == 4
    assert all(s.statistics()["shutting_down"] for s in SEEN)
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_app_errors_fail_tests_with_the_app_traceback(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(APPS + '''

async def test_trio_serve_app_raises(trio_http_serve, trio_http_client):
    server = await trio_http_serve(boom)
    assert (await trio_http_client(server).get("/a")).status_code == 500


def test_thread_app_raises(trio_http_thread_server):
    server = trio_http_thread_server(boom, tls=False)
    assert httpx.get(server.url + "/b").status_code == 500


def test_thread_app_raises_and_test_fails(trio_http_thread_server):
    server = trio_http_thread_server(boom, tls=False)
    assert httpx.get(server.url + "/c").status_code == 200


async def test_trio_app_raises_and_test_fails(trio_http_serve, trio_http_client):
    server = await trio_http_serve(boom)
    assert (await trio_http_client(server).get("/d")).status_code == 200


def test_raise_app_errors_false(trio_http_thread_server):
    server = trio_http_thread_server(boom, tls=False, raise_app_errors=False)
    assert httpx.get(server.url + "/e").status_code == 500
    assert isinstance(server.app_error, ZeroDivisionError)
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tb=long")
    result.assert_outcomes(failed=4, passed=1)  # failures, not teardown errors
    out = result.stdout.str()
    sections = _sections(out)
    app_line = 'raise ZeroDivisionError("app exploded")'
    for name in ("test_trio_serve_app_raises", "test_thread_app_raises",
                 "test_trio_app_raises_and_test_fails"):
        assert "ZeroDivisionError: app exploded" in sections[name], name
        assert app_line in sections[name], name  # the app's own frame
    failed = sections["test_thread_app_raises_and_test_fails"]
    assert "assert 500 == 200" in failed
    assert "the app also raised while serving GET '/c'" in failed
    assert "ZeroDivisionError: app exploded" in failed
    assert "assert 500 == 200" in sections["test_trio_app_raises_and_test_fails"]


def test_sync_fixtures_work_without_pytest_trio(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntimeout = 60\n")
    pytester.makepyfile(APPS + '''
import sys


def test_thread_server_without_pytest_trio(trio_http_thread_server, trio_http_ca):
    assert "pytest_trio" not in sys.modules
    server = trio_http_thread_server(hello)
    with httpx.Client(verify=server.ssl_context(), http2=True) as client:
        assert client.get(server.url).text == "2"


def test_app_error_still_fails(trio_http_thread_server):
    server = trio_http_thread_server(boom)
    with httpx.Client(verify=server.ssl_context()) as client:
        assert client.get(server.url).status_code == 500
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:trio")
    result.assert_outcomes(passed=1, failed=1)
    assert "ZeroDivisionError: app exploded" in _sections(result.stdout.str())[
        "test_app_error_still_fails"]


def test_docs_examples_run(pytester: pytest.Pytester) -> None:
    """Every example of docs/testing.md, run as the page presents it."""
    text = (Path(__file__).parent.parent / "docs" / "testing.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 7, "update this test along with the page"
    trio_tests, by_hand, sync, script, asyncio_test, client_lib, http3 = blocks
    pytester.makeini(INI)
    pytester.makepyfile(
        test_doc_trio="\n".join([trio_tests, by_hand, http3]),
        test_doc_sync=sync,
        test_doc_asyncio=asyncio_test,
        test_doc_client_library=client_lib,
        doc_script=script,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=11)
    ran = pytester.run(sys.executable, "doc_script.py", timeout=60)
    assert ran.ret == 0, ran.stderr.str()
