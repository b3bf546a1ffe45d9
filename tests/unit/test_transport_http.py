"""The HTTP client of the probes, against a real TLS server on 127.0.0.1 that sends set bytes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import exporter
from exporter.reasons import Reason
from exporter.transport import (
    ClosedBeforeResponse,
    HttpResponse,
    HttpSession,
    ProbeFailure,
    SystemResolver,
)
from exporter.transport.http import MAX_HEADER_BYTES, host_field
from tests.unit.transport_peers import HOST, CraftedServer, Pki, Writer, make_pki

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture
async def serve(pki: Pki) -> AsyncIterator[Callable[..., Any]]:
    """Start CraftedServers for a test; all are stopped at its end."""
    servers: list[CraftedServer] = []

    async def start(answer: Any, *, tls12: bool = False, per_connection: int = 1) -> CraftedServer:
        server = CraftedServer(pki.server_context(tls12=tls12), answer, per_connection)
        servers.append(await server.start())
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[HttpSession]:
    """The probe's session; closed at the end of the test, whatever happened."""
    session = HttpSession(resolver=SystemResolver())
    yield session
    await session.close()


async def get(
    session: HttpSession, pki: Pki, server: CraftedServer, method: str = "GET"
) -> HttpResponse:
    """One request to ``server``."""
    return await session.request(method, HOST, server.port, pki.client_context(), "/x", {})


async def test_host_header_carries_the_port(pki: Pki, serve: Any, session: HttpSession) -> None:
    """A request names host and port in Host; the Host rule leaves out only port 443."""
    server = await serve(lambda head: OK)
    await get(session, pki, server)
    assert f"\r\nHost: {HOST}:{server.port}\r\n".encode() in server.requests[0]
    assert host_field("qlik.example", 443) == "qlik.example"
    assert host_field("qlik.example", 4242) == "qlik.example:4242"


async def test_user_agent_names_the_exporter_and_its_version(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """Every request says who is asking, once."""
    server = await serve(lambda head: OK)
    await get(session, pki, server)
    line = f"\r\nUser-Agent: qlik-sense-exporter/{exporter.__version__}\r\n".encode()
    assert server.requests[0].count(line) == 1


async def test_request_headers_are_sent_as_given(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """Caller headers go out with their case, and Latin-1 values as Latin-1 bytes."""
    server = await serve(lambda head: OK)
    headers = {"X-Qlik-User": "UserDirectory=LAB; UserId=Jérôme"}
    await session.request("GET", HOST, server.port, pki.client_context(), "/a?b=c", headers)
    head = server.requests[0]
    assert head.startswith(b"GET /a?b=c HTTP/1.1\r\n")
    assert "X-Qlik-User: UserDirectory=LAB; UserId=Jérôme\r\n".encode("latin-1") in head


async def test_a_header_value_http_cannot_carry_is_refused_without_quoting_it(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """A line break in a header value would inject headers: nothing is sent, the name is told."""
    server = await serve(lambda head: OK)
    headers = {"Authorization": "Bearer s3cret\r\nX-Evil: 1"}
    with pytest.raises(ProbeFailure) as info:
        await session.request("GET", HOST, server.port, pki.client_context(), "/", headers)
    assert info.value.reason is Reason.CREDENTIAL_INVALID
    assert "Authorization" in info.value.message
    assert "s3cret" not in str(info.value)
    assert server.requests == []


async def test_keep_alive_reuses_the_connection(pki: Pki, serve: Any, session: HttpSession) -> None:
    """A second request to the same host and port goes over the first connection."""
    server = await serve(lambda head: OK, per_connection=2)
    first = await get(session, pki, server)
    second = await get(session, pki, server)
    assert (first.body, second.body) == (b"ok", b"ok")
    assert (server.connections, len(server.requests)) == (1, 2)


async def test_connection_close_opens_a_new_connection_for_the_next_request(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """After ``Connection: close`` the next request connects again."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    server = await serve(lambda head: answer, per_connection=2)
    await get(session, pki, server)
    await get(session, pki, server)
    assert server.connections == 2


@pytest.mark.parametrize(
    ("answer", "method", "status", "body"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\nto the end", "GET", 200, b"to the end"),
        (b"HTTP/1.0 200 OK\r\n\r\nold", "GET", 200, b"old"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD", 200, b""),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", "GET", 204, b""),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", "GET", 304, b""),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, "GET", 200, b"ok"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2;ext=1\r\nab\r\n1\r\nc\r\n0\r\nX-Trailer: t\r\n\r\n",
            "GET",
            200,
            b"abc",
        ),
    ],
    ids=["to-eof", "http10", "head", "204", "304", "100-then-200", "chunked"],
)
async def test_bodies_are_framed_as_http_says(
    pki: Pki, serve: Any, session: HttpSession, answer: bytes, method: str, status: int, body: bytes
) -> None:
    """Body to EOF, none for HEAD/204/304, 1xx skipped, chunks joined and trailers dropped."""
    server = await serve(lambda head: answer)
    resp = await get(session, pki, server, method=method)
    assert (resp.status, resp.body) == (status, body)


async def test_headers_keep_their_case_and_repeats(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """Headers come back case-insensitive, with every Set-Cookie and the reason phrase."""
    answer = (
        b"HTTP/1.1 404 Not Here\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 0\r\n\r\n"
    )
    server = await serve(lambda head: answer)
    resp = await get(session, pki, server)
    assert (resp.status, resp.reason) == (404, "Not Here")
    assert resp.headers.getall("SET-COOKIE") == ["a=1", "b=2"]


async def test_body_after_head_is_empty_and_the_connection_stays_usable(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """A HEAD response's Content-Length does not make the next response lose bytes."""
    answers = iter([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", OK])
    server = await serve(lambda head: next(answers), per_connection=2)
    assert (await get(session, pki, server, method="HEAD")).body == b""
    assert (await get(session, pki, server)).body == b"ok"
    assert server.connections == 1


async def test_phases_and_server_certificate_are_recorded(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """resolve, connect, tls, request and read are timed; the server's DER is handed over."""
    server = await serve(lambda head: OK)
    seen: list[tuple[str, int, bytes]] = []
    session.on_certificate = lambda *a: seen.append(a)
    await get(session, pki, server)
    assert set(session.phases) == {"resolve", "connect", "tls", "request", "read"}
    assert all(v >= 0 for v in session.phases.values())
    assert seen == [(HOST, server.port, pki.server_der)]


async def test_close_aborts_every_connection(pki: Pki, serve: Any, session: HttpSession) -> None:
    """close() ends kept-alive, merely opened and in-use connections: the server sees each end."""
    server = await serve(lambda head: OK, per_connection=5)
    await get(session, pki, server)  # kept alive, idle
    await session.open(HOST, server.port, pki.client_context())  # opened, never used
    await session.open(HOST, server.port, pki.client_context())
    await server.until(connections=3)
    assert server.ended == 0
    await session.close()
    await server.until(ended=3)


async def test_a_clean_close_before_any_byte_after_tls13_is_fresh(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """TLS 1.3 refuses a client certificate by closing before the first answer: fresh."""
    server = await serve(lambda head: b"")
    with pytest.raises(ClosedBeforeResponse) as info:
        await get(session, pki, server)
    assert info.value.fresh


async def test_a_clean_close_over_tls12_is_not_fresh(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """Over TLS 1.2 a refused client certificate fails the handshake, so a close is not one."""
    server = await serve(lambda head: b"", tls12=True)
    with pytest.raises(ClosedBeforeResponse) as info:
        await get(session, pki, server)
    assert not info.value.fresh


async def test_a_close_before_the_second_answer_is_not_fresh(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """On a reused connection the handshake is long over: the close says nothing about it."""
    answers = iter([OK, b""])
    server = await serve(lambda head: next(answers), per_connection=2)
    await get(session, pki, server)
    with pytest.raises(ClosedBeforeResponse) as info:
        await get(session, pki, server)
    assert not info.value.fresh


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", asyncio.IncompleteReadError),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            asyncio.IncompleteReadError,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Le", ConnectionResetError),
    ],
    ids=["content-length", "chunked", "in-head"],
)
async def test_a_close_mid_response_is_a_closed_connection(
    pki: Pki, serve: Any, session: HttpSession, answer: bytes, error: type[Exception]
) -> None:
    """The peer leaving mid-response raises what the runner maps to server_error."""
    server = await serve(lambda head: answer)
    with pytest.raises(error):
        await get(session, pki, server)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nX-Token s3cret\r\n\r\n", "malformed response"),
        (b"SSH-2.0-OpenSSH s3cret\r\n\r\n", "malformed response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", "malformed response"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\ns3cret\r\n",
            "malformed response",
        ),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEADER_BYTES, "response headers too large"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
            "response body too large: 99999999999 bytes",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + b"x" * 1024,
            "response body too large",
        ),
    ],
    ids=["header-line", "not-http", "digits", "chunk-size", "head-size", "length", "chunked"],
)
async def test_bad_answers_are_invalid_responses_that_quote_nothing(
    pki: Pki, serve: Any, session: HttpSession, answer: bytes, message: str
) -> None:
    """Broken framing and oversized parts are invalid_response with a clear, quote-free line."""
    server = await serve(lambda head: answer)
    session.max_body = 1000
    with pytest.raises(ProbeFailure) as info:
        await get(session, pki, server)
    assert info.value.reason is Reason.INVALID_RESPONSE
    assert info.value.message.startswith(message)
    assert "s3cret" not in str(info.value)


class Endless:
    """An answer that sends a head and then one unit over and over until the client leaves."""

    def __init__(self, head: bytes, unit: bytes) -> None:
        self.head = head
        self.block = unit * (65536 // len(unit))

    def __call__(self, request: bytes) -> Callable[[Writer], Any]:
        return self.write

    async def write(self, writer: Writer) -> None:
        """Write until the connection breaks."""
        writer.write(self.head)
        while True:
            writer.write(self.block)
            await writer.drain()


@pytest.mark.parametrize(
    ("head_bytes", "unit"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"1\r\na\r\n"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"1;" + b"e" * 500 + b"\r\na\r\n",
        ),
        (b"", b"HTTP/1.1 100 Continue\r\n\r\n"),
    ],
    ids=["one-byte-chunks", "chunk-extensions", "endless-1xx"],
)
async def test_endless_framing_ends_within_the_byte_budget(
    pki: Pki, serve: Any, session: HttpSession, head_bytes: bytes, unit: bytes
) -> None:
    """Tiny chunks or 1xx heads without end stop early, in little CPU, as invalid_response."""
    endless = Endless(head_bytes, unit)
    server = await serve(endless)
    cpu = time.process_time()
    with pytest.raises(ProbeFailure) as info:
        await get(session, pki, server)
    cpu = time.process_time() - cpu
    assert info.value.reason is Reason.INVALID_RESPONSE
    assert info.value.message.startswith("response framing too large")
    await server.until(ended=1)  # the client hung up
    assert cpu < 0.5


async def test_real_chunking_of_a_large_body_is_within_the_budget(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """A 1 MiB body in 256-byte chunks is read whole: the budget grows with the body."""
    body = bytes(range(256)) * 4096
    chunks = b"".join(b"100\r\n" + body[i : i + 256] + b"\r\n" for i in range(0, len(body), 256))
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    server = await serve(lambda head: answer)
    resp = await get(session, pki, server)
    assert resp.body == body
