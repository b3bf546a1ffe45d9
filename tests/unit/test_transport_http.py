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


async def test_a_body_of_exactly_max_body_is_read(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """The limit is inclusive, for a Content-Length body and a chunked one alike."""
    session.max_body = 1000
    body = b"b" * 1000
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + body
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + body + b"\r\n0\r\n\r\n"
    )
    for answer in (plain, chunked):
        server = await serve(lambda head, answer=answer: answer)
        assert (await get(session, pki, server)).body == body


@pytest.mark.parametrize(
    ("answer", "method", "status"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", "HEAD", 200),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 99999999\r\n\r\n", "GET", 204),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99999999\r\n\r\n", "GET", 304),
    ],
    ids=["head", "204", "304"],
)
async def test_a_large_content_length_without_a_body_is_no_failure(
    pki: Pki, serve: Any, session: HttpSession, answer: bytes, method: str, status: int
) -> None:
    """HEAD, 204 and 304 announce a length but carry no body: nothing to refuse."""
    session.max_body = 1000
    server = await serve(lambda head: answer)
    resp = await get(session, pki, server, method=method)
    assert (resp.status, resp.body) == (status, b"")


def chunks_of_one_byte(n: int) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"1\r\na\r\n" * n + b"0\r\n\r\n"


async def test_many_chunks_within_the_framing_budget_are_read(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """2000 one-byte chunks frame 10 kB around 2 kB: within the 16 kB (+ body/8) budget."""
    server = await serve(lambda head: chunks_of_one_byte(2000))
    assert (await get(session, pki, server)).body == b"a" * 2000


async def test_chunks_over_the_budget_fail_even_when_one_read_holds_them(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """3500 one-byte chunks (~21 kB, a read or two) are refused by counting the chunks."""
    server = await serve(lambda head: chunks_of_one_byte(3500))
    with pytest.raises(ProbeFailure) as info:
        await get(session, pki, server)
    assert info.value.message.startswith("response framing too large: ")


async def test_framing_counts_the_bytes_read_with_the_head(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """Trailers of 20 kB are refused, also when the first 8 kB came with the head."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    trailer = b"X-T: " + b"t" * 993 + b"\r\n"  # 1000 bytes each

    async def write(writer: Writer) -> None:
        writer.write(head + trailer * 8)
        await writer.drain()
        for _ in range(12):
            await asyncio.sleep(0.02)
            writer.write(trailer)
            await writer.drain()
        await asyncio.sleep(0.3)
        writer.write(b"\r\n")
        await writer.drain()

    server = await serve(lambda request: write)
    with pytest.raises(ProbeFailure) as info:
        await get(session, pki, server)
    assert info.value.message.startswith("response framing too large: ")
    assert info.value.message.endswith(" bytes around a body of 0 bytes")


async def test_a_chunk_line_longer_than_the_head_limit_is_named(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """A chunk header that outgrows h11's buffer in one read is a too large chunk header."""

    async def write(writer: Writer) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;")
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(b"e" * (MAX_HEADER_BYTES + 10000))
        await writer.drain()
        await asyncio.sleep(1)

    server = await serve(lambda request: write)
    with pytest.raises(ProbeFailure) as info:
        await get(session, pki, server)
    assert info.value.message == "response chunk header too large"


async def test_a_malformed_head_is_named_by_h11_without_the_bytes(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    server = await serve(lambda head: b"HTTP/1.1 200 OK\r\nX-Token s3cret\r\n\r\n")
    with pytest.raises(ProbeFailure) as info:
        await get(session, pki, server)
    assert info.value.message == "malformed response: illegal header line"


def test_h11_errors_are_cut_before_any_quoted_bytes_and_at_80_characters() -> None:
    import h11

    from exporter.transport.http import _quoteless

    assert _quoteless(h11.RemoteProtocolError("bad line: b'secret'")) == "bad line"
    assert _quoteless(h11.RemoteProtocolError("x" * 100)) == "x" * 80


async def test_a_clean_close_says_what_it_is(pki: Pki, serve: Any, session: HttpSession) -> None:
    server = await serve(lambda head: b"")
    with pytest.raises(ClosedBeforeResponse) as info:
        await get(session, pki, server)
    assert str(info.value) == "connection closed before the response"


async def test_a_request_http_cannot_carry_names_the_part_without_its_value(
    pki: Pki, serve: Any, session: HttpSession
) -> None:
    """A long header name is cut at 40 characters; a bad path is named as the path."""
    server = await serve(lambda head: OK)
    ctx = pki.client_context()
    name = "X-" + "n" * 60
    with pytest.raises(ProbeFailure) as info:
        await session.request("GET", HOST, server.port, ctx, "/", {name: "a\nb"})
    assert info.value.message == (
        f"request header {name[:40]!r} holds characters HTTP does not allow"
    )
    with pytest.raises(ProbeFailure) as info:
        await session.request("GET", HOST, server.port, ctx, "/a b", {})
    assert (info.value.reason, info.value.message) == (
        Reason.CREDENTIAL_INVALID,
        "the request path holds characters HTTP does not allow",
    )
    assert server.requests == []


def test_response_text_is_the_first_300_bytes_with_bad_utf8_replaced() -> None:
    from multidict import CIMultiDict

    resp = HttpResponse(200, "OK", CIMultiDict(), b"\xff" + b"a" * 400)
    assert resp.text() == "\ufffd" + "a" * 299
    assert resp.text(3) == "\ufffdaa"


async def test_the_system_resolver_returns_the_addresses_of_the_name_given() -> None:
    """A numeric host resolves to itself, without DNS."""
    assert await SystemResolver().resolve("127.0.0.2", 443) == ["127.0.0.2"]


def chunked_body(ones: int, twos: int) -> bytes:
    """A chunked response of ``twos`` two-byte chunks, then ``ones`` one-byte chunks."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"2\r\nab\r\n" * twos + b"1\r\nc\r\n" * ones + b"0\r\n\r\n"


@pytest.mark.parametrize(("twos", "allowed"), [(1535, True), (1527, False)])
async def test_the_framing_budget_is_16_kib_plus_an_eighth_of_the_body_at_most(
    pki: Pki, serve: Any, session: HttpSession, twos: int, allowed: bool
) -> None:
    """3400 chunks count 17000 bytes of framing: allowed around 4935 bytes of body
    (16384 + 4935 // 8 = 17000), not around 4927 (16384 + 615)."""
    answer = chunked_body(3400 - twos, twos)
    server = await serve(lambda head: answer)
    if allowed:
        assert len((await get(session, pki, server)).body) == 3400 + twos
        return
    with pytest.raises(ProbeFailure) as info:
        await get(session, pki, server)
    assert info.value.message.startswith("response framing too large: ")


async def test_a_request_body_goes_out_with_its_length(pki: Pki, session: HttpSession) -> None:
    """A POST carries Content-Length and the body, and the phases are this request's times."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        received.append(head + await reader.readexactly(11))
        writer.write(OK)
        await writer.drain()
        await reader.read()

    server = await asyncio.start_server(handle, HOST, 0, ssl=pki.server_context())
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.perf_counter()
        resp = await session.request(
            "POST", HOST, port, pki.client_context(), "/token", {}, b"grant=x&y=z"
        )
        elapsed = time.perf_counter() - started
    finally:
        await session.close()
        server.close()
        await server.wait_closed()
    assert resp.body == b"ok"
    assert received[0].startswith(b"POST /token HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 11\r\n" in received[0]
    assert received[0].endswith(b"\r\n\r\ngrant=x&y=z")
    assert 0 <= session.phases["request"] <= elapsed
    assert 0 <= session.phases["read"] <= elapsed
