"""The bench's lean HTTP client against a real socket server: what it reads back, and that a
connection the server closes or cuts is replaced rather than reused."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from bench.http_client import HttpError, LeanClient

Answer = bytes | None  # None: cut the connection without answering


@contextlib.asynccontextmanager
async def http_server(answers: list[Answer]) -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    """A server that answers each request with the next of ``answers``; yields its address,
    the request bodies it read, and how many connections it accepted (a one-item list)."""
    bodies: list[bytes] = []
    connections = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        try:
            while answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                bodies.append(await reader.readexactly(length))
                answer = answers.pop(0)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if b"Connection: close" in answer:
                    break
        except asyncio.IncompleteReadError:
            pass  # the client closed the connection
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", bodies, connections


def _json_answer(value: object, *, close: bool = False) -> bytes:
    body = json.dumps(value).encode()
    extra = b"Connection: close\r\n" if close else b""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_answers_are_read_whole_over_one_kept_connection_taking_turns() -> None:
    chunked = (
        b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
    )
    async with http_server([_json_answer({"n": 1}), chunked]) as (url, bodies, connections):
        client = LeanClient(url, timeout_s=5)
        first, second = await asyncio.gather(
            client.post("/graphql", json={"query": "{ x }"}),
            client.post("/graphql", json={"query": "{ y }"}),
        )
        await client.aclose()
    assert (first.status_code, first.json()) == (200, {"n": 1})
    assert (second.status_code, second.json()) == (503, {"a": 1})
    assert [json.loads(body) for body in bodies] == [{"query": "{ x }"}, {"query": "{ y }"}]
    assert connections == [1]


async def test_a_connection_the_server_closes_or_cuts_is_replaced() -> None:
    answers: list[Answer] = [_json_answer(1, close=True), None, _json_answer(3)]
    async with http_server(answers) as (url, _, connections):
        client = LeanClient(url, timeout_s=5)
        assert (await client.post("/", json={})).json() == 1
        with pytest.raises(HttpError):
            await client.post("/", json={})
        assert (await client.post("/", json={})).json() == 3
        await client.aclose()
    assert connections == [3]
